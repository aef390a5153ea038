"""The experiment's sections as frozen dataclasses; their defaults are the only defaults.

A TOML file mirrors the sections (``[data]``, ``[model]``, ``[train]``, ``[defense]``,
``[attack]`` and ``[attack.<name>]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from feddp_eval.config.fields import setting
from feddp_eval.plugins import attack_card

Device = Literal["auto", "cpu", "cuda"]
OptimizerName = Literal["sgd", "adam"]
SamplingName = Literal["defense", "poisson"]
EngineName = Literal["local", "flower"]
LrSchedule = Literal["constant", "cosine"]
TileMode = Literal["crop", "resize"]
Difficulty = Literal["easy", "hard"]
AccountantName = Literal["rdp", "prv"]
MaskKnowledge = Literal["known", "unknown"]


@dataclass(frozen=True)
class DataConfig:
    """Where tiles come from and how they are split into sites.

    Attributes:
        source: ``"synthetic"`` for the embedded generator, or a folder of
            ``images/`` + ``masks/`` (one per site, or one split across ``sites``).
        sites: Number of institutions (synthetic data, or a single real folder to split).
        train_tiles: Training tiles per synthetic site: one number for all, or one per site.
        test_tiles: Held-out tiles per synthetic site.
        tile_size: Tile edge in pixels.
        test_fraction: Held-out share of a real folder's images, per site.
        tile_mode: How real images become tiles: ``crop`` (non-overlapping) or ``resize``.
        difficulty: Synthetic tiles: ``easy``, or ``hard`` (crowded, pale and hyperchromatic
            nuclei, dark look-alikes, blur, stain drift within a site; see ``feddp_eval.data.hard``).
        format: How the folder ``source`` is laid out: a registered dataset format, read as its
            authors ship it (``feddp-eval list formats``); empty: ``images/`` + ``masks/`` pairs.
        site_by: How the format splits the dataset into sites (each format lists its choices;
            the first is its default); empty: the format's default.
        level: Pyramid level a whole-slide format reads (0 = full resolution).
    """

    source: str = "synthetic"
    sites: int = setting(4, ge=1, most=1024)
    train_tiles: int | tuple[int, ...] = setting((48, 32, 24, 4), ge=1, most=1_000_000)
    test_tiles: int = setting(16, ge=1, most=1_000_000)
    tile_size: int = setting(64, ge=8, most=4096)
    test_fraction: float = setting(0.25, gt=0, lt=1)
    tile_mode: TileMode = "crop"
    difficulty: Difficulty = setting("easy", added=True)
    format: str | None = setting(None, added=True)
    site_by: str | None = setting(None, added=True)
    level: int = setting(0, ge=0, note="a pyramid level", most=64, added=True)


@dataclass(frozen=True)
class ModelConfig:
    """U-Net shape.

    Attributes:
        depth: Poolings of the U-Net.
        width: Channels at full resolution (doubling per level).
        groups: GroupNorm with up to this many groups.
        activation: ``relu``, ``gelu`` or ``sigmoid``.
    """

    depth: int = setting(2, ge=1, most=10)
    width: int = setting(16, ge=1, most=4096)
    groups: int = setting(8, ge=1, most=4096)
    activation: Literal["relu", "gelu", "sigmoid"] = "relu"


@dataclass(frozen=True)
class TrainConfig:
    """FedAvg and the clients' local training.

    Attributes:
        rounds: Federated rounds.
        client_fraction: Share of sites sampled each round (at least one).
        local_epochs: Passes over the local data per round (used when ``local_steps`` is 0).
        local_steps: Fixed number of local optimizer steps per round; 0 means "use epochs".
        batch_size: Local batch size.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.
        lr: Local learning rate (of the first round, under a schedule).
        lr_schedule: How the server sets each round's local learning rate: ``constant``, or
            ``cosine``: ``lr · ½(1 + cos(π (r − 1) / rounds))`` in round r, from ``lr`` down to a small
            last step, so the final global model settles instead of jittering from round to round.
            The round's rate is in its capture metadata (the attacker knows it).
        momentum: SGD momentum (ignored by Adam).
        dice_weight: Weight of the soft Dice term in the loss (BCE + w * soft Dice).
        engine: What runs the rounds (``feddp_eval.federated.engine``): ``local``, in this process;
            ``flower``, as Flower ClientApps on Flower's Simulation Runtime (the ``flower`` extra).
        audit: Plant canaries and audit the run: a one-run lower bound ε̂ on the code's ε, recorded
            beside the accountant's (``feddp_eval.audit``; ``feddp-eval audit RUN_DIR``).
        audit_canaries: m, the canaries the audit plants (each a member with probability ½).
        evaluate: When the global model is scored on every site's held-out tiles: ``every-round``
            (``metrics.csv`` holds each round, for the report's training curves) or ``final`` (the
            last round only; the same final numbers and weights, about 15% of a default run
            saved). ``feddp-eval attack``'s extra seed runs for ΔDice use ``final``.
        sampling: How clients draw their local batches: ``defense``, as the defense does (Poisson
            sampling under ``dp-sgd``, shuffled passes otherwise), or ``poisson``, every client
            Poisson-samples whatever the defense (each tile in each step with probability
            ``batch_size / n``; ``feddp-eval attack --paired-batches`` trains its undefended reference
            so, to draw the same batches as a ``dp-sgd`` arm).
    """

    rounds: int = setting(10, ge=1, most=1_000_000)
    client_fraction: float = setting(1.0, gt=0, le=1)
    local_epochs: int = setting(1, ge=1, most=100_000)
    local_steps: int = setting(0, ge=0, note="0 = use epochs", most=10_000_000)
    batch_size: int = setting(8, ge=1, most=1_000_000)
    optimizer: OptimizerName = "sgd"
    lr: float = setting(0.05, gt=0, le=10, note="SGD on this loss diverges long before")
    momentum: float = setting(0.9, ge=0, lt=1)
    dice_weight: float = setting(1.0, ge=0)
    engine: EngineName = setting("local", added=True)
    audit: bool = setting(False, added=True)
    audit_canaries: int = setting(1000, ge=2, only_with="audit")
    lr_schedule: LrSchedule = setting("constant", added=True)
    evaluate: Literal["every-round", "final"] = setting("every-round", added=True)
    sampling: SamplingName = setting("defense", added=True)


@dataclass(frozen=True)
class DefenseConfig:
    """The defense wrapped around training (see ``feddp-eval list defenses``).

    Attributes:
        name: Registered defense name; ``none`` is the undefended reference.
        noise: Noise multiplier σ of the chosen mechanism.
        clip: Clipping bound C (per sample for ``dp-sgd``, per update otherwise).
        delta: δ at which ε is reported.
        accountant: ``rdp`` or ``prv``.
        target_epsilon: If set, calibrate σ so the whole run spends this ε.
        prune_ratio: Share of update coordinates ``prune`` sets to zero.
        poisson_sampling: ``dp-sgd`` draws local batches by Poisson sampling, as its
            accountant assumes; turning it off voids the guarantee (for tests).
        grad_sample_mode: How ``dp-sgd`` computes and clips per-sample gradients: ``bk``
            (book-keeping, the default since issue #23: ``defenses/book_keeping.py``, one backward
            without weight gradients, Opacus' noise and accountant; the same step as ``ew`` to float
            rounding, at 1.0–1.2× a plain step), or Opacus' ``ew`` (expanded weights, the default
            before; 1.6–2.0×), ``hooks`` or ``functorch``. Other defenses ignore it, and their hashes
            hold ``ew`` whatever it says.
        server: A server-side defense composed with this client-side one (``[defense.server]``,
            e.g. ``name = "central-dp"``), with its own noise, clip and δ; empty: none.
    """

    name: str = "none"
    noise: float = setting(0.0, ge=0, most=1e6, most_note="beyond it every update is pure noise")
    clip: float = setting(1.0, gt=0)
    delta: float = setting(1e-5, gt=0, lt=1)
    accountant: AccountantName = "rdp"
    target_epsilon: float | None = setting(
        None, gt=0, most=1e6, most_note="no privacy is left above it; use defense `none`"
    )
    prune_ratio: float = setting(0.9, ge=0, lt=1)
    poisson_sampling: bool = True
    grad_sample_mode: Literal["ew", "hooks", "functorch", "bk"] = setting(
        "bk", acts_when=("name", ("dp-sgd",)), published="ew"
    )
    server: DefenseConfig | None = setting(None, added=True)


AttackBudget = Literal["quick", "standard", "thorough"]


@dataclass(frozen=True)
class AttackSettings:
    """Which captured update(s) are attacked, by what, and with what knowledge.

    Attributes:
        name: Registered attack (see ``feddp-eval list attacks``).
        iterations: Optimisation steps per restart; empty: the budget's.
        restarts: Independent starts (run as one batch; the best objective wins); empty: the budget's.
        budget: Named preset of iterations and restarts (see :attr:`BUDGETS`): ``quick`` (500
            iterations, 1 restart: the default), ``standard`` (2,000 × 1) or ``thorough``
            (4,000 × 2, the order of the papers' budgets). An explicit ``iterations`` or
            ``restarts`` wins over the preset.
        mask: ``known`` (the attacker has the true masks: the most it could know; what the
            attack rebuilds is still a lower bound on leakage) or ``unknown`` (recovered jointly
            with the image).
        target_site: Site index whose update is attacked; -1 = the site with the fewest tiles.
        target_round: Round whose update is attacked, or ``"all"``: every round the site took part
            in, inverted jointly (multi-round honest server).
        rounds_used: With ``target_round = "all"``: invert only the first N rounds the site took
            part in (0 = all of them).
        time_budget: Seconds per attack (0 = no limit).
        plateau: An inversion stops when its best objective fell by less than this fraction of itself
            over the last 100 iterations, checked every 25 once 3/8 of the iterations have run (the
            rule reads the objective only, never the truth); the attack table says how many
            iterations each arm used. 0 runs the whole budget.
        image: ``stain`` (H&E optical-density prior) or ``pixels`` (free RGB, as in the papers);
            empty: the attack's own default.
        init: ``prior`` (start at the site's public mean colour) or ``uniform`` noise; empty: the
            attack's own default.
        recipe: ``default`` (the attack's own defaults) or, for ``inverting-gradients``, ``paper``:
            Geiping et al.'s recipe (free RGB pixels from uniform noise, signed Adam at lr 0.1, no
            colour penalty). An explicit ``image`` or ``init`` still wins.
        lpips_net: LPIPS backbone: ``alex`` or ``vgg``.
        imprint_bins: Bins of the imprint block a malicious server sends (``imprint`` attack only).
        imprint_gain: How loud the imprint bins are in the update at the same perturbation of the
            tile (``imprint`` only): louder survives more DP noise (see README for the measured
            curves); 1 is the plain block.
        convergence_every: Write the objective and PSNR every this many iterations to
            ``convergence.csv`` in the attack folder (0 = do not record).
        utility_seeds: ``feddp-eval attack`` trains each arm at this many seeds (the config's seed and
            the next ones, paired across arms) and reports the defended arm's ΔDice with its 95% paired-t
            interval; only the first seed is attacked. 1 trains once and says the ΔDice "cannot tell".
        paired_batches: ``feddp-eval attack``: the undefended reference draws its clients' local
            batches as a Poisson-sampling defended arm (``dp-sgd``) does, from the same seeded draws
            (``[train] sampling = "poisson"``), so in every round both arms' clients train on the
            same tiles: the attacked updates hold the same tiles, and ΔDice is what clipping and
            noise cost, not the sampling. Off: the reference trains as any undefended run does
            (shuffled passes), and on a site larger than the batch the arms attack different tiles.
        options: An attack's own settings by attack name, the ``[attack.<name>]`` tables of a TOML
            file (``[attack.inverting-gradients] tv_weight = 0.1``), checked against that attack's
            ``Config``; the settings above are set here, not in those tables.
    """

    BUDGETS: ClassVar[dict[str, tuple[int, int]]] = {
        "quick": (500, 1),
        "standard": (2000, 1),
        "thorough": (4000, 2),
    }

    name: str = "inverting-gradients"
    iterations: int | None = setting(None, ge=1, note="or empty: the budget's", most=100_000_000)
    restarts: int | None = setting(None, ge=1, note="or empty: the budget's", most=4096)
    budget: AttackBudget = "quick"
    mask: MaskKnowledge = "known"
    target_site: int = setting(-1, ge=-1, note="-1 = the smallest site", most=1023)
    target_round: int | str = setting(1, ge=1, note="or 'all'", most=1_000_000)  # "all": validate()
    rounds_used: int = setting(0, ge=0, note="0 = every round")
    time_budget: float = setting(0.0, ge=0, note="0 = none")
    plateau: float = setting(0.01, ge=0, lt=1, note="0 = no stop")
    image: Literal["stain", "pixels"] | None = None
    init: Literal["prior", "uniform"] | None = None
    recipe: Literal["default", "paper"] = "default"
    lpips_net: Literal["alex", "vgg"] = "alex"
    # The imprint attack's settings stay here with `recipe` (not in its [attack.imprint] table): moving
    # them would change every attack hash and the TOML format. The attack's card says which it reads.
    imprint_bins: int = setting(128, ge=2, most=1_000_000)
    imprint_gain: float = setting(1e4, gt=0)
    convergence_every: int = setting(25, ge=0, note="0 = off")
    options: dict[str, dict[str, Any]] = setting(default_factory=dict, added=True)
    utility_seeds: int = setting(3, ge=1, le=50, note="training seeds per arm", added=True)
    paired_batches: bool = setting(False, added=True)

    # TOML: a table under [attack] (``[attack.dlg]``) is that attack's entry in ``options``.
    NESTED_TABLES: ClassVar[str] = "options"

    @property
    def schedule(self) -> tuple[int, int]:
        """(iterations, restarts): the explicit settings where given, else the budget's."""
        iterations, restarts = self.BUDGETS[self.budget]
        return (
            self.iterations if self.iterations is not None else iterations,
            self.restarts if self.restarts is not None else restarts,
        )

    @property
    def multi_round(self) -> bool:
        """Whether several rounds are inverted jointly (``target_round = "all"``)."""
        return self.target_round == "all"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines a run's numbers, plus where it is written.

    Attributes:
        seed: The experiment seed; every random draw flows from it through explicit generators.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        capture: Write each client's released update into the run directory (what attacks read).
        data: The ``[data]`` table.
        model: The ``[model]`` table.
        train: The ``[train]`` table.
        defense: The ``[defense]`` table.
        attack: The ``[attack]`` table.
    """

    seed: int = setting(0, most=2**62)
    device: Device = "auto"
    capture: bool = True
    data: DataConfig = setting(default_factory=DataConfig)
    model: ModelConfig = setting(default_factory=ModelConfig)
    train: TrainConfig = setting(default_factory=TrainConfig)
    defense: DefenseConfig = setting(default_factory=DefenseConfig)
    attack: AttackSettings = setting(default_factory=AttackSettings)


def server_modification(config: ExperimentConfig) -> dict[str, Any] | None:
    """What a malicious server sends instead of the global model (``None``: an honest server).

    The attack declares it on its card (:mod:`feddp_eval.plugins`): the modification's name and the
    ``[attack]`` settings that shape it. A malicious server changes the model it sends one client in
    one round, and so that training run; every other attack only reads captures.

    Raises:
        ConfigError: No attack plugin is loaded (``import attacks`` first): an attack's name alone
            does not say whether it trains a run of its own.
    """
    a = config.attack
    card = attack_card(a.name)
    if card is None or card.modifies_model is None:
        return None
    return {
        "modification": card.modifies_model,
        "site": a.target_site,
        "round": a.target_round,
        **{key: getattr(a, setting) for key, setting in card.modification_settings},
    }
