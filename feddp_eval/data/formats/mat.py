"""Read a nucleus instance map from a MATLAB ``.mat`` label file (CoNSeP, Lizard).

scipy reads MATLAB v4/v5/v7 files (no pickle involved). A v7.3 file is HDF5 inside, which scipy
refuses; it is reported with the fix instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feddp_eval.data.formats.base import Reader, check_foreground, one_line
from feddp_eval.errors import DataError

V73_FIX = (
    "re-save it as a v7 file (MATLAB: `save(name, '-struct', 's', '-v7')`; Python with h5py + scipy: "
    "read it with h5py and write it with scipy.io.savemat), or use the authors' original download"
)


def read_instance_map(path: Path, key: str = "inst_map") -> np.ndarray:
    """The label map ``key`` of a ``.mat`` file, as a 2-D integer array (0 = background).

    Raises:
        DataError: the file is missing, is a v7.3/HDF5 ``.mat``, cannot be read, lacks ``key``, or
            holds something other than a 2-D array of non-negative whole numbers.
    """
    from scipy.io import loadmat, whosmat

    try:
        names = [name for name, _, _ in whosmat(path)]
        if key not in names:
            found = ", ".join(sorted(names)) or "none"
            raise DataError(
                f"label file {path} has no `{key}` (variables: {found}); use the authors' label file"
            )
        array = loadmat(path, variable_names=[key])[key]
    except NotImplementedError:  # scipy's answer to a v7.3 (HDF5) file
        raise DataError(
            f"label file {path} is a MATLAB v7.3 (HDF5) .mat, which scipy cannot read; {V73_FIX}"
        ) from None
    except DataError:
        raise
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on a damaged file
        raise DataError(
            f"cannot read label file {path} ({one_line(exc)}); replace it with the authors' original"
        ) from None
    return _whole_numbers(np.asarray(array), path, key)


def _whole_numbers(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if array.ndim != 2 or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise DataError(
            f"`{key}` in {path} is a {array.dtype} array of shape {array.shape}; it must be a 2-D "
            f"label map (H, W): replace the file with the authors' original"
        )
    if np.issubdtype(array.dtype, np.floating) and not (
        np.isfinite(array).all() and (array == np.round(array)).all()
    ):
        raise DataError(
            f"`{key}` in {path} holds non-integer labels; replace the file with the authors' original"
        )
    if array.size and array.min() < 0:
        raise DataError(
            f"`{key}` in {path} holds negative labels ({array.min()}); labels are 0 (background) "
            f"or a nucleus id"
        )
    return array


def mat_reader(image: Path, label: Path) -> Reader:
    """Reads an image and the foreground (``inst_map`` > 0) of its ``.mat`` label file."""

    def read() -> tuple[np.ndarray, np.ndarray]:
        from feddp_eval.data.image_files import read_image

        pixels = read_image(image)
        instances = read_instance_map(label)
        check_foreground(instances, image_shape=pixels.shape, mask_name=str(label), image_name=str(image))
        return pixels, instances > 0

    return read
