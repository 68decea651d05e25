"""Table 2 and Figures 1 and 4: FID and KID of supervised MINE examples, conv view against random view.

The untargeted supervised MinMax attack (the Carlini-Wagner margin, kappa = 0, the
step maximizing per-sample MI, epsilon = 1) on N test images the classifier
classifies correctly, once with the conv view (the K feature maps of the classifier's
first Conv2D) and R times with the random view (K = 96 Gaussian projections, as the
paper's Table 2; run r uses seed S + r). Each set of examples is scored by its
Fréchet distance (FID) and kernel distance (KID, x 100 as the paper prints it) to the
training data in a fixed feature space (:mod:`uae_tf.metrics`); the clean test
images get the same scores (the ``original`` row: the floor N samples and the
extractor give). Figure 1 shows originals, conv-view and random-view examples with
the classifier's predicted labels.

``epsilon`` (``--epsilon``) sets the L-infinity bound: the paper's Table 2 and
Figure 1 are at epsilon = 1, its Figure 4 (appendix B.1) is Figure 1 on CIFAR-10
at epsilon = 0.03; at 0.03 the figure is drawn as Fig. 4 (``fig4_examples.png``)
and the report shows no paper numbers beside the table, which the paper gives at
epsilon = 1 only.

Feature extractors (``--extractor``):

* ``inception``: InceptionV3 with ImageNet weights (the paper's FID/KID), downloaded
  once into the Keras cache; offline and not cached, a clear error. The default on
  ``cifar10``.
* ``classifier``: the penultimate layer of a second Carlini-Wagner classifier,
  trained once into OUT/extractor on the same training data with seed S + 1 (not
  the attacked classifier, whose features the attack moves by construction). Needs
  no download; the default on every other dataset. Its numbers are not comparable
  with Inception-based ones.
* a path: a ``.keras`` model whose output is the features.

The paper's settings (CIFAR-10, 1000 test images, 10 random-view runs, K = 96,
Inception features) are for a GPU:
``uae reproduce table2 --dataset cifar10 --n 1000 --runs 10 --steps 1000
--classifier-epochs 50 --attack-batch-size 32``; Figure 4 adds ``--epsilon 0.03``. T is not stated for Table 2; the
published ``test_attack.py`` runs 1000 iterations at epsilon = 1. The CPU default
(:data:`CPU`) runs on the embedded mnist5k digits with the ``classifier`` extractor;
it took 31 minutes on 2 CPU cores shared with three other jobs (15 CPU-minutes,
about 9 on 2 idle cores, estimated), 21 s to resume once finished.

Writes, and resumes from, OUT::

    OUT/config.json                      the settings (refused if changed)
    OUT/classifier/, OUT/extractor/      the attacked classifier, the extractor
    OUT/conv/, OUT/random/run-R/         attack results in chunks
    OUT/features/train.npz               the training data's features
    OUT/report.json, OUT/report.md, OUT/fig1_examples.png (fig4_examples.png at
    epsilon 0.03, examples_eps<E>.png at another epsilon)
"""

import time
from pathlib import Path

import numpy as np

from uae_tf import datasets, metrics
from uae_tf._argtypes import add_attack_batch_size_argument, int_at_least
from uae_tf._io import read_npz, write_npz_atomic
from uae_tf._validation import check_positive_float
from uae_tf.attacks import MinMaxAttack
from uae_tf.criteria import MarginCriterion
from uae_tf.models.classifiers import predict_labels
from uae_tf.reproduce import _supervised, paper
from uae_tf.reproduce.reports import (
    cell,
    distances,
    markdown_table,
    mean_or_none,
    new_figure,
    printer,
    write_report,
)
from uae_tf.runs import attack_config, attack_in_chunks, check_config, file_sha256, versions
from uae_tf.views import find_first_conv2d

NAME = "table2"
SUMMARY = "Table 2 / Figure 1: FID and KID of supervised MINE examples, conv view against random view."
_FORMAT = "uae-tf/table2/v1"

EPSILON = 1.0  # Figure 1 and Table 2: "the maximal scaled L-infinity perturbation bound".
# The paper's figures of these examples, by epsilon: Fig. 1 and Fig. 4 (appendix B.1).
FIGURES = {1.0: (1, "fig1_examples.png"), 0.03: (4, "fig4_examples.png")}
NUM_PROJECTIONS = 96  # Table 2's K of the random view.
EXTRACTORS = ("auto", "classifier", "inception")
EXTRACTOR_DIR = "extractor"
FEATURES_FILE = "features/train.npz"
FIGURE_SAMPLES = 8
CHUNK_SIZE = 16
KID_SCALE = 100  # The paper's Table 2 prints KID x 100.
# The CPU default: 32 correctly classified mnist5k test digits, T = 100 iterations
# (as figure3), 3 random-view runs; the classifiers trained 15 epochs (as table3).
CPU = {"n": 32, "steps": 100, "runs": 3, "classifier_epochs": 15}


def run_table2(
    out,
    model=None,
    dataset="mnist5k",
    data_dir=None,
    classifier_epochs=CPU["classifier_epochs"],
    n=CPU["n"],
    steps=CPU["steps"],
    runs=CPU["runs"],
    num_projections=NUM_PROJECTIONS,
    extractor="auto",
    attack_batch_size=None,
    seed=0,
    epsilon=EPSILON,
    verbose=True,
):
    """Runs the Table 2 / Figure 1 (or 4) experiment into ``out`` (resuming what is there).

    Args:
        out: Experiment directory.
        model: Path of the classifier to attack; default: train the Carlini-Wagner
            classifier into ``out/classifier``, or reuse it.
        dataset: Dataset whose test split is attacked (paper: ``cifar10``).
        data_dir: tensorflow-datasets cache directory.
        classifier_epochs: Epochs of the classifiers trained here (the attacked one
            and the ``classifier`` extractor).
        n: Correctly classified test samples attacked (paper: 1000).
        steps: T, MinMax iterations per example.
        runs: R, random-view runs with seeds ``seed``, ``seed + 1``... (paper: 10).
        num_projections: K of the random view (paper: 96).
        extractor: ``"auto"`` (``inception`` on cifar10, else ``classifier``),
            ``"classifier"``, ``"inception"`` or the path of a ``.keras`` feature
            model (see the module docstring).
        attack_batch_size: Samples attacked at once; does not change the results.
            Default: the attack's (1 on a CPU for the conv view, 16 for the
            random view, from the free memory on a GPU).
        seed: Seed of the classifier and of the attacks.
        epsilon: L-infinity bound of the attacks, in (0, 1] (Table 2 and Figure 1:
            1; Figure 4: 0.03).
        verbose: Print progress.

    Returns:
        The report written to ``out/report.json``: ``rows`` (``original``, ``conv``,
        ``random``: ``fid``, ``kid`` (unscaled), ``asr``, ``l2``...; the random row
        as mean and standard deviation over its runs, with ``per_run``),
        ``extractor``, ``paper`` (Table 2), ``config``, ``figure`` and ``seconds``.

    Raises:
        uae_tf.runs.ConfigMismatchError: if ``out`` holds results of other settings.
        uae_tf.metrics.WeightsUnavailableError: for ``inception`` offline without
            the cached weights.

    Example:

    >>> report = run_table2("runs/table2", n=4, steps=10, runs=2)  # doctest: +SKIP
    >>> [row["method"] for row in report["rows"]]  # doctest: +SKIP
    ['original', 'conv', 'random']
    """
    began = time.perf_counter()
    epsilon = check_positive_float(epsilon, "epsilon", upper=1.0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = printer(verbose)
    runs = int(runs)
    if extractor == "auto":
        extractor = "inception" if dataset == "cifar10" else "classifier"
    if extractor not in EXTRACTORS and not Path(extractor).is_file():
        raise ValueError(
            f"extractor must be one of {EXTRACTORS} or the path of a .keras feature model. "
            f"Received: extractor={extractor!r}"
        )
    extractor_key = extractor if extractor in EXTRACTORS else {
        "path": str(extractor), "sha256": file_sha256(extractor)
    }
    check_config(out, {
        "dataset": dataset, "model": None if model is None else str(model),
        "classifier_epochs": classifier_epochs, "n": n, "steps": steps, "runs": runs,
        "num_projections": num_projections, "epsilon": epsilon, "extractor": extractor_key,
        "seed": seed,
    }, format=_FORMAT)

    model, model_facts, x, y, indices = _supervised.classifier_and_samples(
        out, n, model, dataset, classifier_epochs, seed, data_dir, say, verbose
    )
    # The extractor first: an unavailable one (InceptionV3 offline) fails before the attacks.
    extract, extractor_facts = _extractor(out, extractor, dataset, x.shape[1:],
                                          classifier_epochs, seed, data_dir, verbose)
    say(f"Features: {extractor_facts['description']}")
    criterion = MarginCriterion(model)
    attacks = {"conv": [_attack(criterion, "conv", steps, num_projections, seed, attack_batch_size,
                                epsilon)]}
    attacks["random"] = [_attack(criterion, "random", steps, num_projections, seed + r,
                                 attack_batch_size, epsilon) for r in range(runs)]
    results = {}
    for method, method_attacks in attacks.items():
        results[method] = []
        for r, attack in enumerate(method_attacks):
            directory = out / method if method == "conv" else out / method / f"run-{r}"
            say(f"{method} view{'' if method == 'conv' else f' run {r}'}: {n} samples x "
                f"{steps} iterations ...")
            config = {"model_sha256": model_facts["sha256"], "dataset": dataset,
                      "indices": indices.tolist(), "attack": attack_config(attack)}
            result, seconds = attack_in_chunks(attack, x, directory, config, CHUNK_SIZE,
                                               indices=indices, labels=y, verbose=verbose)
            results[method].append((result, predict_labels(model, result.x_adv), seconds))

    reference = _reference_features(out, extract, dataset, data_dir)
    rows = [_scores({"method": "original", "k": None, "runs": None},
                    metrics.extract_features(extract, x), reference)]
    for method, method_results in results.items():
        per_run = []
        for result, predicted, seconds in method_results:
            success = predicted != y
            distance = distances(x, result.x_adv)
            per_run.append(_scores({
                "asr": float(np.mean(success)),
                "mi": mean_or_none(result.mi[success]),
                "l2": float(np.mean(distance["l2"])),
                "linf": float(np.mean(distance["linf"])),
                "seconds": seconds,
            }, metrics.extract_features(extract, result.x_adv), reference))
        k = find_first_conv2d(model).filters if method == "conv" else num_projections
        rows.append(_summary(method, k, per_run))
        say(f"  {method}: FID {rows[-1]['fid']:.4g}, KID x 100 "
            f"{rows[-1]['kid'] * KID_SCALE:.4g}, ASR {rows[-1]['asr']:.1%}")

    number, figure = _figure_of(epsilon)
    _plot(out / figure, x, y, {m: r[0][:2] for m, r in results.items()}, number, epsilon)
    report = {
        "rows": rows,
        "extractor": extractor_facts,
        "paper": paper.TABLE2,
        "config": {
            "dataset": dataset,
            "n": n,
            "indices": indices.tolist(),
            "steps": steps,
            "runs": runs,
            "epsilon": epsilon,
            "num_projections": num_projections,
            "kid_subsets": metrics.KID_SUBSETS,
            "kid_subset_size": metrics.KID_SUBSET_SIZE,
            "seed": seed,
            "classifier": model_facts,
            "attacks": {m: a[0].get_config() for m, a in attacks.items()},
            "versions": versions(),
        },
        "figure": str(out / figure),
        "seconds": time.perf_counter() - began,
    }
    write_report(out, report, _markdown(report))
    say(f"Wrote {out / 'report.json'}, report.md and {figure}.")
    return report


def add_arguments(parser):
    """Adds the experiment's options to ``parser``."""
    _supervised.add_classifier_arguments(parser, CPU["classifier_epochs"])
    parser.add_argument(
        "--n", type=int_at_least(2), default=CPU["n"], metavar="N",
        help="correctly classified test samples attacked (default: %(default)s; paper: 1000)",
    )
    parser.add_argument(
        "--steps", type=int_at_least(1), default=CPU["steps"], metavar="T",
        help="MinMax iterations per example (default: %(default)s; the published "
        "test_attack.py: 1000)",
    )
    parser.add_argument(
        "--runs", type=int_at_least(1), default=CPU["runs"], metavar="R",
        help="random-view runs, seeds S..S+R-1 (default: %(default)s; paper: 10)",
    )
    parser.add_argument(
        "--num-projections", type=int_at_least(2), default=NUM_PROJECTIONS, metavar="K",
        help="K of the random view (default: %(default)s, the paper's Table 2)",
    )
    parser.add_argument(
        "--extractor", default="auto", metavar="NAME|PATH",
        help="features of FID and KID: 'inception' (InceptionV3, ImageNet weights, "
        "downloaded once), 'classifier' (penultimate layer of a second classifier trained "
        "into OUT/extractor; no download) or a .keras model whose output is the features "
        "(default: auto, inception on cifar10 and classifier otherwise)",
    )
    parser.add_argument(
        "--epsilon", type=float, default=EPSILON, metavar="E",
        help="L-infinity bound of the attacks, in (0, 1] (default: %(default)s, Table 2 and "
        "Fig. 1; 0.03 draws Fig. 4)",
    )
    add_attack_batch_size_argument(
        parser, default="the attack's: 1 on a CPU for the conv view, 16 for the random view; "
        "from the free memory on a GPU"
    )
    _supervised.add_run_arguments(parser, seed_of="the classifier and of the attacks")


def run(args):
    """``uae reproduce table2``: runs :func:`run_table2` from parsed arguments."""
    report = run_table2(
        args.out, model=args.model, dataset=args.dataset, data_dir=args.data_dir,
        classifier_epochs=args.classifier_epochs, n=args.n, steps=args.steps, runs=args.runs,
        num_projections=args.num_projections, extractor=args.extractor,
        attack_batch_size=args.attack_batch_size, seed=args.seed, epsilon=args.epsilon,
        verbose=not args.quiet,
    )
    return {"out": str(args.out), "rows": report["rows"], "figure": report["figure"],
            "seconds": report["seconds"]}


def _figure_of(epsilon):
    """``(paper figure number or None, file name)`` of the examples' figure at ``epsilon``."""
    number, name = FIGURES.get(epsilon, (None, f"examples_eps{epsilon:g}.png"))
    return number, name


def _attack(criterion, view, steps, num_projections, seed, batch_size, epsilon):
    similarity = {"name": "mine", "view": view}
    if view == "random":
        similarity["num_projections"] = num_projections
    return MinMaxAttack(criterion, similarity=similarity, steps=steps, epsilon=epsilon,
                        seed=seed, batch_size=batch_size)


def _extractor(out, extractor, dataset, input_shape, epochs, seed, data_dir, verbose):
    """Returns ``(feature model, JSON facts with a plain-words description)``."""
    if extractor == "inception":
        return metrics.inception_v3_extractor(input_shape), {
            "name": "inception",
            "description": "InceptionV3 with ImageNet weights (Keras), 2048-d average-pooled "
            "features, images resized to 299x299 (grayscale tiled to 3 channels)",
            "comparable_with_paper": True,
        }
    if extractor == "classifier":
        classifier, facts = _supervised.classifier(
            out, None, dataset, epochs, seed + 1, data_dir, verbose=2 if verbose else 0,
            name=EXTRACTOR_DIR,
        )
        extract = metrics.layer_extractor(classifier)
        width = int(np.prod(extract.output_shape[1:]))
        return extract, {
            "name": "classifier", **facts, "seed": seed + 1, "features": width,
            "description": f"the penultimate layer ({width}-d) of a second Carlini-Wagner "
            f"classifier trained on the {dataset} training split with seed {seed + 1} (not "
            "the attacked one); no download, and not comparable with Inception-based FID/KID",
            "comparable_with_paper": False,
        }
    extract = metrics.load_extractor(extractor)
    return extract, {
        "name": "file", "path": str(extractor), "sha256": file_sha256(extractor),
        "description": f"the output of {extractor}; not comparable with Inception-based "
        "FID/KID unless it is InceptionV3",
        "comparable_with_paper": False,
    }


def _reference_features(out, extract, dataset, data_dir):
    """The training split's features, computed once into ``out/features/train.npz``."""
    path = out / FEATURES_FILE
    if path.is_file():
        features = read_npz(path, "delete it and rerun to compute it again").get("features")
        if features is None:
            raise ValueError(f"{path} holds no features; delete it and rerun to compute them.")
        return features
    x_train, _ = datasets.load(dataset, "train", data_dir=data_dir)
    features = metrics.extract_features(extract, x_train)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(path, features=features)
    return features


def _scores(row, features, reference):
    """``row`` with the FID and KID of ``features`` against ``reference``."""
    kid, kid_subset_std = metrics.kernel_inception_distance(features, reference)
    return {**row, "fid": metrics.frechet_distance(features, reference), "kid": kid,
            "kid_subset_std": kid_subset_std}


def _summary(method, k, per_run):
    """A method's row: its one run, or the mean and std over its runs with ``per_run``."""
    row = {"method": method, "k": k, "runs": len(per_run)}
    for key in ("fid", "kid", "asr", "mi", "l2", "linf", "seconds"):
        values = [r[key] for r in per_run if r[key] is not None]
        row[key] = mean_or_none(values)
        if key in ("fid", "kid", "asr"):
            row[f"{key}_std"] = float(np.std(values)) if len(values) > 1 else None
    if len(per_run) > 1:
        row["per_run"] = per_run
    return row


def _plot(path, x, y, examples, number, epsilon):
    """Figure 1 (or 4): originals, then each view's examples, predicted labels below."""
    count = min(len(x), FIGURE_SAMPLES)
    blocks = [("original", x, y)] + [
        (f"{method} view", result.x_adv, predicted) for method, (result, predicted) in examples.items()
    ]
    fig = new_figure(figsize=(1.1 * count + 0.6, 1.35 * len(blocks)), layout="constrained")
    axes = fig.subplots(len(blocks), count, squeeze=False)
    cmap = "gray" if x.shape[-1] == 1 else None
    for row, (label, images, labels) in zip(axes, blocks):
        for i, ax in enumerate(row[:count]):
            image = images[i]
            ax.imshow(np.squeeze(image, -1) if cmap else image, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            fooled = labels[i] != y[i]
            ax.set_xlabel(f"{labels[i]}", fontsize=8,
                          color="black" if label == "original" or fooled else "red")
        row[0].set_ylabel(label, fontsize=8)
    title = f"Figure {number}: " if number else ""
    fig.suptitle(f"{title}MINE examples (ε = {epsilon:g}), predicted labels", fontsize=9)
    fig.savefig(path, dpi=100)


def _markdown(report):
    """report.md: our rows beside the paper's Table 2, and what the extractor is."""
    config, extractor, published = report["config"], report["extractor"], report["paper"]
    # The paper's Table 2 is at epsilon = 1 only.
    at_papers_epsilon = config["epsilon"] == EPSILON
    rows = []
    for row in report["rows"]:
        method = row["method"]
        fid, kid = cell(row["fid"], ".4g"), cell(row["kid"] * KID_SCALE, ".4g")
        if row.get("fid_std") is not None:
            fid += f" ± {row['fid_std']:.3g}"
            kid += f" ± {row['kid_std'] * KID_SCALE:.3g}"
        ref = published["rows"].get(method) if at_papers_epsilon else None
        paper_fid = paper_kid = ""
        if ref is not None:
            paper_fid = f"{ref['fid']}" + (f" ± {ref['fid_std']}" if ref.get("fid_std") else "")
            paper_kid = f"{ref['kid_x100']}" + (
                f" ± {ref['kid_x100_std']}" if ref.get("kid_x100_std") else "")
        rows.append([
            _LABELS[method], cell(row["k"], "d"), cell(row["runs"], "d"),
            cell(row.get("asr"), ".1%"), cell(row.get("mi"), ".3g"), cell(row.get("l2"), ".3g"),
            fid, kid, paper_fid, paper_kid,
        ])
    comparable = extractor["comparable_with_paper"]
    number, name = _figure_of(config["epsilon"])
    figure = f"Figure {number}" if number else f"MINE examples at epsilon = {config['epsilon']:g}"
    lines = [
        "# Table 2: FID and KID of supervised MINE examples (conv view, random view)",
        "",
        f"{config['n']} correctly classified test samples of `{config['dataset']}` "
        f"(classifier test accuracy {cell(config['classifier'].get('test_accuracy'), '.2%')}), "
        f"untargeted C&W margin (kappa = 0), epsilon = {config['epsilon']}, "
        f"{config['steps']} MinMax iterations; the random view {config['runs']} run(s) "
        f"with seeds {config['seed']}..{config['seed'] + config['runs'] - 1} (mean ± std over "
        "runs). FID and KID (x 100, as the paper prints it; unbiased polynomial-kernel "
        f"MMD^2 over {config['kid_subsets']} subsets of min({config['kid_subset_size']}, N) "
        "samples) are against the whole training split; lower is closer. `original` is "
        "the clean test samples themselves: the floor that N samples give.",
        "",
        f"**Features:** {extractor['description']}."
        + ("" if comparable else " **These FID/KID values are not comparable with the "
           "paper's or any Inception-based ones: compare the rows with each other.**"),
        "",
        *markdown_table(
            ["examples", "K", "runs", "ASR", "MI", "L2", "FID", "KID x 100",
             "paper FID", "paper KID x 100"],
            rows,
        ),
        "",
        published["note"] if at_papers_epsilon else
        f"The paper gives Table 2 at epsilon = {EPSILON:g} only: no paper numbers at epsilon = "
        f"{config['epsilon']:g}.",
        "",
        f"![{figure}]({name})",
        "",
        f"{figure} ({name}): the first {min(config['n'], FIGURE_SAMPLES)} samples, their "
        "conv-view examples and the first random-view run's; under each image the "
        "classifier's predicted label, red where the example does not fool it.",
        "",
    ]
    return "\n".join(lines)


_LABELS = {"original": "original (clean)", "conv": "1st conv layer output",
           "random": "random sampling"}
