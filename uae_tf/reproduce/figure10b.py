"""Appendix I, Figure 10(b): PGD against SimCLR and SimCLR-UAE (linear-probe classifiers).

Reads a finished Table 7 run (``uae reproduce table7``): its ``original``
(SimCLR) and ``mine-uae`` (SimCLR-UAE) encoders of one seed. Each gets a linear
probe (:func:`uae_tf.models.linear_probe`, seeded), and the encoder plus probe is
attacked by L-infinity PGD as published: cross-entropy, random start, step 0.01,
100 steps, epsilon 1/255 to 16/255, on test samples both models classify
correctly. A lower ASR is a more robust model; the paper finds SimCLR-UAE below
SimCLR, markedly for epsilon <= 0.02.

The probe is the ``published`` protocol by default, as the paper's classifiers
were fine-tuned: SimCLR-UAE's head on the originals plus the Table 7 run's UAEs
with copied labels, SimCLR's on the originals, both on crops and flips;
``probe="frozen"`` trains both on fixed features of the originals. The report
names the protocol.

Writes OUT/pgd/MODEL/eps_E/ (resumable), OUT/report.json, OUT/report.md and
OUT/figure10b.png.
"""

import argparse
import time
from pathlib import Path

import keras

from uae_tf import datasets
from uae_tf._argtypes import add_seed_argument, int_at_least
from uae_tf._validation import check_choice
from uae_tf.attacks import PGDAttack
from uae_tf.augmentation import UAESequence
from uae_tf.generation import load_results
from uae_tf.models.simclr_training import PROBE_EPOCHS, PROBES, linear_probe
from uae_tf.reproduce import _supervised
from uae_tf.reproduce.reports import (
    REPORT_FILE,
    markdown_table,
    plot_asr_against_epsilon,
    printer,
    write_report,
)
from uae_tf.reproduce import table7 as table7_run
from uae_tf.runs import attack_config, attack_in_chunks, file_sha256, model_file, read_config
from uae_tf.runs import versions
from uae_tf.training import load_model_dir

NAME = "figure10b"
SUMMARY = "Appendix I, Fig. 10(b): PGD ASR against epsilon for SimCLR with and without UAEs."
EPSILONS = tuple(e / 255 for e in (1, 2, 4, 6, 8, 10, 12, 14, 16))
PGD_STEPS = 100
PGD_STEP_SIZE = 0.01
MODELS = {"original": "SimCLR", "mine-uae": "SimCLR-UAE"}
FIGURE = "figure10b.png"


def run_figure10b(table7, out, seed=None, n=50, epsilons=EPSILONS, probe="published",
                  verbose=True):
    """Runs PGD against the Table 7 models of one seed, into ``out`` (resumable).

    Args:
        table7: Directory of a finished ``uae reproduce table7`` run.
        out: Output directory.
        seed: Which replicate of the Table 7 run (default its first).
        n: Test samples attacked (the first ones both models classify correctly).
        epsilons: L-infinity bounds of PGD.
        probe: Linear-probe protocol, ``"published"`` (default: SimCLR-UAE's head
            also trained on the run's UAEs with copied labels) or ``"frozen"``.
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json`` (``rows``: ``model``, ``epsilon``,
        ``asr``; ``config``; ``seconds``).

    Raises:
        FileNotFoundError: if ``table7`` is not a run directory.
        ValueError: if it is a directory of another kind (a generation, a Table 4
            run...) or an unfinished Table 7 run, or ``seed`` is not one of its seeds.
    """
    began = time.perf_counter()
    check_choice(probe, PROBES, "probe")
    say = printer(verbose)
    table7, out = Path(table7), Path(out)
    what = "a finished 'uae reproduce table7' directory"
    config = read_config(table7, table7_run.FORMAT, what=what)
    if not (table7 / REPORT_FILE).is_file():
        raise ValueError(f"{table7} is not {what}: it has no {REPORT_FILE} yet. Rerun its "
                         "'uae reproduce table7' command to finish it.")
    seed = config["seeds"][0] if seed is None else int(seed)
    if seed not in config["seeds"]:
        raise ValueError(f"seed must be one of the Table 7 run's {config['seeds']}. "
                         f"Received: seed={seed}")
    x_train, y_train = datasets.load(config["dataset"], "train", data_dir=config["data_dir"])
    x_train, y_train = x_train[: config["limit"]], y_train[: config["limit"]]
    x_test, y_test = datasets.load(config["dataset"], "test", data_dir=config["data_dir"])
    classifiers, facts = {}, {}
    for name in MODELS:
        path = model_file(table7 / f"seed-{seed}" / name)
        encoder = load_model_dir(path)[0].encoder
        x_probe, y_probe = x_train, y_train
        if probe == "published" and name == "mine-uae":
            uaes = load_results(table7 / f"seed-{seed}" / "augment" / "mine-uae")
            pool = UAESequence.from_results(x_train, uaes, y=y_train)
            x_probe, y_probe = pool.x_pool, pool.y
        result, head = linear_probe(
            encoder, x_probe, y_probe, x_test, y_test, protocol=probe,
            epochs=config.get("probe_epochs", PROBE_EPOCHS), seed=seed,
            batch_size=config["batch_size"] if probe == "published" else None)
        classifiers[name] = keras.Sequential([encoder, head])
        facts[name] = {"sha256": file_sha256(path), **result}
        say(f"{MODELS[name]}: {probe} linear-probe test accuracy {result['test_accuracy']:.2%}")
    indices = _supervised.correctly_classified(list(classifiers.values()), x_test, y_test, n)
    x, y = x_test[indices], y_test[indices]
    rows = []
    for name, classifier in classifiers.items():
        for epsilon in sorted(epsilons):
            attack = PGDAttack(classifier, epsilon=epsilon, steps=PGD_STEPS,
                               step_size=PGD_STEP_SIZE, loss="crossentropy", random_start=True,
                               seed=seed)
            # The head is retrained, seeded, from the encoder and the probe protocol.
            run_config = {"model_sha256": facts[name]["sha256"], "probe": probe,
                          "indices": indices.tolist(), "attack": attack_config(attack)}
            result, seconds = attack_in_chunks(
                attack, x, out / "pgd" / name / f"eps_{epsilon:.5f}", run_config, 128,
                indices=indices, labels=y)
            rows.append({"model": name, "epsilon": epsilon, "asr": result.attack_success_rate,
                         "seconds": seconds})
        say(f"{MODELS[name]}: PGD ASR " + ", ".join(
            f"{r['epsilon'] * 255:g}/255: {r['asr']:.0%}" for r in rows if r["model"] == name))
    report = {
        "rows": rows,
        "config": {"table7": str(table7), "seed": seed, "dataset": config["dataset"], "n": n,
                   "probe": probe,
                   "indices": indices.tolist(), "epsilons": sorted(epsilons),
                   "pgd": {"steps": PGD_STEPS, "step_size": PGD_STEP_SIZE,
                           "loss": "crossentropy", "random_start": True},
                   "models": facts, "versions": versions()},
        "seconds": time.perf_counter() - began,
    }
    plot_asr_against_epsilon(out / FIGURE, rows, MODELS, "PGD against SimCLR + linear probe, with and without UAEs")
    write_report(out, report, _markdown(report))
    say(f"Wrote {out / 'report.json'}, report.md and {FIGURE}.")
    return report



def _markdown(report):
    config = report["config"]
    asr = {(r["model"], r["epsilon"]): r["asr"] for r in report["rows"]}
    rows = [[label, f"{config['models'][name]['test_accuracy']:.2%}",
             *(f"{asr[(name, e)]:.0%}" for e in config["epsilons"])]
            for name, label in MODELS.items()]
    return "\n".join([
        "# Appendix I, Figure 10(b): robustness of SimCLR after UAE augmentation",
        "",
        f"Encoders of the Table 7 run `{config['table7']}` (seed {config['seed']}, "
        f"{config['dataset']}), each with its linear probe, protocol `{config['probe']}` "
        f"({_PROBE_WORDS[config['probe']]}); PGD: L-infinity, cross-entropy, "
        f"random start, {PGD_STEPS} steps of {PGD_STEP_SIZE}, on {config['n']} test samples "
        "both classify correctly. Cells: PGD attack success rate (lower is more robust).",
        "",
        *markdown_table(["model", "probe accuracy",
                         *(f"ε = {e * 255:g}/255" for e in config["epsilons"])], rows),
        "",
        f"![ASR against epsilon]({FIGURE})",
        "",
    ])


_PROBE_WORDS = {
    "published": "the paper's: a head fine-tuned on crops and flips, SimCLR-UAE's on the "
                 "originals plus the run's UAEs with copied labels",
    "frozen": "Adam on fixed features of the originals",
}


def _epsilons(text):
    """Parses ``--epsilons``: comma-separated numbers of 1/255 in (0, 255]."""
    try:
        values = tuple(float(v) / 255 for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in (0, 255], got {text!r}")
    return values


def add_arguments(parser):
    """Adds the options of ``uae reproduce figure10b``."""
    parser.add_argument("--table7", required=True, metavar="DIR",
                        help="a finished 'uae reproduce table7' directory")
    add_seed_argument(parser, help="replicate of the Table 7 run (default: its first)",
                      default=None)
    parser.add_argument("--n", type=int_at_least(1), default=50, metavar="N",
                        help="test samples attacked (default: %(default)s; paper: 1000)")
    parser.add_argument("--epsilons", type=_epsilons, default=EPSILONS, metavar="E1,E2,...",
                        help="PGD bounds in units of 1/255 (default: 1,2,4,...,16)")
    parser.add_argument("--probe", choices=PROBES, default="published",
                        help="linear-probe protocol (default: %(default)s, the paper's: the head "
                        "fine-tuned on crops and flips, SimCLR-UAE's also on the UAEs; frozen: "
                        "Adam on fixed features of the originals)")
    parser.add_argument("--quiet", action="store_true", help="print only the final JSON line")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")


def run(args):
    """Runs ``uae reproduce figure10b`` from parsed arguments."""
    report = run_figure10b(args.table7, args.out, seed=args.seed, n=args.n,
                           epsilons=args.epsilons, probe=args.probe, verbose=not args.quiet)
    return {"out": str(args.out), "rows": report["rows"], "seconds": report["seconds"]}
