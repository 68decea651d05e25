"""Figs. 6-8 (appendix H.1): MINE-MinMax and PGD against adversarially robust MNIST models.

The paper attacks the released robust MNIST classifiers of Madry et al. (PGD
adversarial training) and of TRADES (Zhang et al.) with its supervised MinMax
attack and with PGD for L-infinity bounds epsilon 0.1 to 1.0: Fig. 6 shows the
examples (a row per digit, a column per epsilon, failures crossed out), Figs. 7
and 8 the attack success rate against epsilon, Madry's and TRADES's. Each model
here gets Figure 3's experiment (:func:`uae_tf.reproduce.run_figure3`: MinMax with
MINE, C&W margin, step 0.01; PGD 100 steps of 2.5 epsilon / 100) and an ASR plot.

Which models (the report says, for each, which one it used):

* by default, robust models uae-tf trains itself, the Carlini-Wagner MNIST
  network each, on the first ``limit`` training digits: ``madry`` by Madry et
  al.'s PGD adversarial training (:class:`uae_tf.models.AdversarialTraining`:
  cross-entropy PGD from a random start), ``trades`` by TRADES
  (:class:`uae_tf.models.TRADESTraining`: PGD on the KL from x + N(0, 0.001^2),
  beta 1.0 as TRADES's MNIST). These are not the released models: fewer digits,
  fewer steps, and on a CPU the clean start and epsilon ramp of
  ``uae reproduce adversarial-training`` (a short training at the full epsilon
  from the first step stays at chance);
* with ``--madry-checkpoint`` / ``--trades-checkpoint``, the released weights a
  user has (:func:`uae_tf.models.load_released_classifier`), converted once into
  ``OUT/NAME/classifier``.

The paper's settings: the released models, MinMax 200 iterations against Madry's
and 300 against TRADES's (``--steps``; one run per model), PGD as here, all MNIST
test digits the model classifies correctly. The CPU default (:data:`CPU`) attacks
5 digits with T = 100 and the conv view.

Writes OUT/config.json, OUT/NAME/ (a ``figure3`` run per model: its classifier,
minmax/ and pgd/ results per epsilon, resumable, and figure3.png, that model's
half of Fig. 6), OUT/fig7_madry.png, OUT/fig8_trades.png, OUT/report.json and
OUT/report.md.
"""

import time
from pathlib import Path

from uae_tf import _validation, datasets
from uae_tf._argtypes import int_at_least, names_among
from uae_tf._io import save_keras_atomic, write_json_atomic
from uae_tf.models import RELEASED, load_released_classifier
from uae_tf.models.classifiers import accuracy
from uae_tf.reproduce import _supervised
from uae_tf.reproduce.figure3 import EPSILONS, PGD_STEPS, run_figure3
from uae_tf.reproduce.figure3 import FIGURE as GRID
from uae_tf.reproduce.reports import markdown_table, plot_asr_against_epsilon, printer, write_report
from uae_tf.runs import MODEL_FILE, RECORD_FILE, check_config, train_once, versions
from uae_tf.views import VIEWS

NAME = "robust-models"
SUMMARY = ("Figs. 6-8: MINE-MinMax and PGD examples and ASR against epsilon on robust "
           "(Madry, TRADES) MNIST models.")
_FORMAT = "uae-tf/robust-models/v1"

LABELS = {"madry": "Madry (PGD adversarial training)", "trades": "TRADES"}
FIGURES = {"madry": ("fig7_madry.png", "Fig. 7"), "trades": ("fig8_trades.png", "Fig. 8")}
METHODS = {"minmax": "MINE-MinMax", "pgd": "PGD"}
PAPER_STEPS = {"madry": 200, "trades": 300}  # Appendix H.1's MinMax iterations on MNIST.
TRADES_BETA = 1.0  # TRADES's train_trades_mnist.py.
FIGURE_SAMPLES = 3
# The CPU default: robust models trained on 1,000 digits for 15 epochs (5 clean, 5 of
# ramp) against a 10-step training PGD at epsilon 0.3; 5 attacked digits, T = 100.
CPU = {"limit": 1000, "classifier_epochs": 15, "train_epsilon": 0.3, "train_steps": 10,
       "clean_epochs": 5, "ramp_epochs": 5, "n": 5, "steps": 100}


def run_robust_models(
    out,
    models=RELEASED,
    checkpoints=None,
    dataset="mnist5k",
    data_dir=None,
    limit=CPU["limit"],
    classifier_epochs=CPU["classifier_epochs"],
    train_epsilon=CPU["train_epsilon"],
    train_steps=CPU["train_steps"],
    train_step_size=None,
    clean_epochs=CPU["clean_epochs"],
    ramp_epochs=CPU["ramp_epochs"],
    trades_beta=TRADES_BETA,
    n=CPU["n"],
    steps=CPU["steps"],
    view="auto",
    epsilons=EPSILONS,
    seed=0,
    verbose=True,
):
    """Runs the Figs. 6-8 experiment into ``out`` (resuming what is there).

    Args:
        out: Experiment directory.
        models: Which of ``"madry"`` and ``"trades"`` to attack.
        checkpoints: ``{name: path}`` of released checkpoints to attack instead of
            training that model (see :func:`uae_tf.models.load_released_classifier`).
        dataset: MNIST-like dataset (28x28x1): training digits for the models
            trained here, test digits to attack.
        data_dir: tensorflow-datasets cache directory.
        limit: Train the models on the first ``limit`` training digits.
        classifier_epochs: Their epochs.
        train_epsilon: L-infinity bound of the training adversary (Madry, TRADES: 0.3).
        train_steps: Its PGD steps (Madry, TRADES: 40).
        train_step_size: Its step (default ``2.5 * train_epsilon / train_steps``;
            Madry, TRADES: 0.01).
        clean_epochs: Epochs on clean batches first (Madry, TRADES: 0).
        ramp_epochs: Epochs over which epsilon then grows to ``train_epsilon``.
        trades_beta: TRADES's beta.
        n: Test digits attacked, the first ones each model classifies correctly.
        steps: MinMax iterations (the paper: 200 against Madry's, 300 against TRADES's).
        view: MINE view (``auto``: the classifier's first Conv2D).
        epsilons: L-infinity bounds of both attacks.
        seed: Seed of the models and the attacks.
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json``: ``rows`` (``model``, ``method``,
        ``epsilon``, ``asr``, ``l2``, ``linf``, ``seconds``), ``models`` (per model
        where it came from, in words, and its classifier's facts), ``figures``,
        ``config`` and ``seconds``.

    Raises:
        ValueError: for an unknown model, a checkpoint of a model not attacked, or
            a dataset whose images are not 28x28x1 with released checkpoints.
        FileNotFoundError: for a checkpoint that does not exist.
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of other settings.
    """
    began = time.perf_counter()
    models = tuple(models)
    unknown = [m for m in models if m not in RELEASED]
    if unknown or not models:
        raise ValueError(f"models must be some of {RELEASED}. Received: models={models!r}")
    checkpoints = {name: str(path) for name, path in (checkpoints or {}).items()}
    extra = sorted(set(checkpoints) - set(models))
    if extra:
        raise ValueError(f"checkpoints of models not attacked: {extra}. Received: "
                         f"models={models!r}, checkpoints={checkpoints!r}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}. Received: view={view!r}")
    classifier_epochs = _validation.check_positive_int(classifier_epochs, "classifier_epochs")
    schedule = _supervised.adversary_schedule(clean_epochs, ramp_epochs, classifier_epochs)
    adversaries = {
        name: _supervised.training_adversary(train_epsilon, train_steps, train_step_size, seed,
                                             loss="kl" if name == "trades" else "crossentropy")
        for name in models if name not in checkpoints
    }
    trades_beta = _validation.check_positive_float(trades_beta, "trades_beta")
    epsilons = tuple(sorted(set(epsilons)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, {"models": list(models), "checkpoints": checkpoints, "dataset": dataset,
                       "limit": limit, "classifier_epochs": classifier_epochs,
                       "adversaries": adversaries, "schedule": schedule,
                       "trades_beta": trades_beta, "n": n, "steps": steps, "view": view,
                       "epsilons": list(epsilons), "seed": seed}, format=_FORMAT)
    say = printer(verbose)
    x_train, y_train = datasets.load(dataset, "train", data_dir=data_dir)
    x_train, y_train = x_train[:limit], y_train[:limit]

    rows, sources, figures = [], {}, {}
    for name in models:
        directory = out / name
        classifier = directory / _supervised.CLASSIFIER_DIR
        if name in checkpoints:
            source = f"the released {LABELS[name]} model, loaded from {checkpoints[name]}"
            _convert_released(classifier, name, checkpoints[name], dataset, data_dir)
        else:
            adversary = adversaries[name]
            source = (
                f"trained here, not the released model: the Carlini-Wagner network on the first "
                f"{len(x_train)} `{dataset}` training digits, {classifier_epochs} epochs by "
                + (f"TRADES (beta {trades_beta:g})" if name == "trades" else
                   "Madry et al.'s PGD adversarial training")
                + f", training PGD at epsilon {adversary['epsilon']:g} ({adversary['steps']} "
                f"steps of {adversary['step_size']:.3g})"
                + (f" after {schedule['clean_epochs']} clean epochs and a "
                   f"{schedule['ramp_epochs']}-epoch epsilon ramp" if any(schedule.values()) else "")
            )
            say(f"{LABELS[name]}: training the robust classifier into {classifier} ...")
            _supervised.classifier(
                directory, None, dataset, classifier_epochs, seed, data_dir,
                verbose=2 if verbose else 0, x=x_train, y=y_train, adversary=adversary,
                schedule=schedule, trades_beta=trades_beta if name == "trades" else None)
        say(f"{LABELS[name]}: {source}")
        grid = run_figure3(directory, model=classifier, dataset=dataset, data_dir=data_dir,
                             n=n, steps=steps, view=view, epsilons=epsilons, seed=seed,
                             figure_samples=FIGURE_SAMPLES, verbose=verbose)
        model_rows = [{"model": name, **row} for row in grid["rows"]]
        rows += model_rows
        sources[name] = {"source": source, "classifier": grid["config"]["classifier"],
                         "indices": grid["config"]["indices"]}
        figure, number = FIGURES[name]
        plot_asr_against_epsilon(
            out / figure, [{**row, "model": row["method"]} for row in model_rows], METHODS,
            f"{number}: ASR against epsilon, {LABELS[name]} model")
        figures[name] = {"asr": figure, "examples": f"{name}/{GRID}"}

    report = {
        "rows": rows,
        "models": sources,
        "figures": figures,
        "config": {"models": list(models), "dataset": dataset, "n": n, "steps": steps,
                   "paper_steps": PAPER_STEPS, "view": view, "epsilons": list(epsilons),
                   "pgd": {"steps": PGD_STEPS, "step_size": "2.5 epsilon / steps",
                           "loss": "margin"},
                   "seed": seed, "versions": versions()},
        "seconds": time.perf_counter() - began,
    }
    write_report(out, report, _markdown(report))
    say(f"Wrote {out / 'report.json'}, report.md and the figures.")
    return report


def _convert_released(directory, name, checkpoint, dataset, data_dir):
    """Saves a released checkpoint as the model directory ``directory``, once."""
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir)
    if x_test.shape[1:] != (28, 28, 1):
        raise ValueError(f"The released {name} model takes 28x28x1 MNIST digits; {dataset!r} "
                         f"has {x_test.shape[1:]}.")

    def convert(target):
        model = load_released_classifier(name, checkpoint)
        save_keras_atomic(model, target / MODEL_FILE)
        write_json_atomic(target / RECORD_FILE, {
            "config": {"released": name, "checkpoint": checkpoint, "dataset": dataset},
            "versions": versions(),
            "test_accuracy": accuracy(model, x_test, y_test),
        })

    train_once(directory, {"released": name, "checkpoint": checkpoint, "dataset": dataset},
               convert)


def _markdown(report):
    config = report["config"]
    lines = [
        "# Figs. 6-8: MINE-MinMax and PGD against robust MNIST models",
        "",
        f"Untargeted attacks on {config['n']} `{config['dataset']}` test digits each model "
        f"classifies correctly: MinMax with MINE (view `{config['view']}`, C&W margin, step "
        f"0.01, {config['steps']} iterations; the paper: {config['paper_steps']['madry']} "
        f"against Madry's, {config['paper_steps']['trades']} against TRADES's) and PGD "
        f"({config['pgd']['steps']} steps of 2.5 epsilon / {config['pgd']['steps']}, margin "
        "loss, no random start). ASR from the model's "
        "predictions; L2 is the mean distance over all digits.",
        "",
    ]
    for name, facts in report["models"].items():
        accuracy = facts["classifier"].get("test_accuracy")
        figure = report["figures"][name]
        by_key = {(r["method"], r["epsilon"]): r for r in report["rows"] if r["model"] == name}
        rows = [[f"{epsilon:g}", *(f"{by_key[(m, epsilon)]['asr']:.0%}" for m in METHODS),
                 *(f"{by_key[(m, epsilon)]['l2']:.3g}" for m in METHODS)]
                for epsilon in config["epsilons"]]
        lines += [
            f"## {LABELS[name]}",
            "",
            f"**Model used:** {facts['source']}"
            + ("" if accuracy is None else f"; test accuracy {accuracy:.2%}") + ".",
            "",
            *markdown_table(["epsilon", "MinMax ASR", "PGD ASR", "MinMax L2", "PGD L2"], rows),
            "",
            f"![{FIGURES[name][1]}]({figure['asr']})",
            "",
            f"Fig. 6, this model's half: [{figure['examples']}]({figure['examples']}) (the "
            f"first {FIGURE_SAMPLES} digits; MinMax rows above PGD rows).",
            "",
        ]
    lines += [
        "The paper gives Figs. 7 and 8 as plots; its text: \"Both attacks have comparable "
        "attack performance. On MNIST, in the mid-range of the epsilon values, our attack "
        "ASR is observed to be lower than PGD, but it can generate higher-quality "
        "adversarial examples\".",
        "",
        f"Total time {report['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser):
    """Adds the experiment's options to ``parser``."""
    parser.add_argument("--models", type=names_among(RELEASED), default=RELEASED, metavar="NAMES",
                        help="robust models to attack, among madry,trades (default: both)")
    parser.add_argument("--madry-checkpoint", metavar="PATH",
                        help="attack the released Madry model instead of training one: a "
                             "TensorFlow checkpoint of MadryLab's mnist_challenge (models/secret)")
    parser.add_argument("--trades-checkpoint", metavar="PATH",
                        help="attack the released TRADES model instead of training one: "
                             "model_mnist_smallcnn.pt (needs PyTorch) or its .npz export")
    _supervised.add_dataset_arguments(parser, "MNIST-like dataset (28x28x1)")
    parser.add_argument("--limit", type=int_at_least(1), default=CPU["limit"], metavar="M",
                        help="train the models on the first M training digits "
                             "(default: %(default)s)")
    parser.add_argument("--classifier-epochs", type=int_at_least(1),
                        default=CPU["classifier_epochs"], metavar="E",
                        help="epochs of the models trained here (default: %(default)s)")
    _supervised.add_adversary_arguments(
        parser, CPU["train_epsilon"], CPU["train_steps"], CPU["clean_epochs"],
        CPU["ramp_epochs"], counted_in="the models'")
    parser.add_argument("--trades-beta", type=float, default=TRADES_BETA, metavar="B",
                        help="TRADES's beta (default: %(default)s, TRADES's MNIST)")
    parser.add_argument("--n", type=int_at_least(1), default=CPU["n"], metavar="N",
                        help="test digits attacked per model (default: %(default)s)")
    parser.add_argument("--steps", type=int_at_least(1), default=CPU["steps"], metavar="T",
                        help="MinMax iterations (default: %(default)s; the paper: 200 against "
                             "Madry's model, 300 against TRADES's)")
    parser.add_argument("--view", choices=VIEWS, default="auto",
                        help="MINE view (default: auto, the classifier's first Conv2D)")
    parser.add_argument("--epsilons", type=_supervised.epsilons, default=EPSILONS,
                        metavar="E1,E2,...", help="L-infinity bounds (default: 0.1,0.2,...,1.0)")
    _supervised.add_run_arguments(parser, seed_of="the models and the attacks")


def run(args):
    """``uae reproduce robust-models``: runs :func:`run_robust_models` from parsed arguments."""
    checkpoints = {name: getattr(args, f"{name}_checkpoint") for name in RELEASED
                   if getattr(args, f"{name}_checkpoint")}
    report = run_robust_models(
        args.out, models=args.models, checkpoints=checkpoints, dataset=args.dataset,
        data_dir=args.data_dir, limit=args.limit, classifier_epochs=args.classifier_epochs,
        train_epsilon=args.train_epsilon, train_steps=args.train_steps,
        train_step_size=args.train_step_size, clean_epochs=args.clean_epochs,
        ramp_epochs=args.ramp_epochs, trades_beta=args.trades_beta, n=args.n,
        steps=args.steps, view=args.view, epsilons=args.epsilons, seed=args.seed,
        verbose=not args.quiet,
    )
    return {"out": str(args.out), "rows": report["rows"], "figures": report["figures"],
            "seconds": report["seconds"]}
