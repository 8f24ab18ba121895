"""Zero-shot accuracy of a CVLP config's initial CLIP: a first-hour check.

Before days of CVLP training, this tells in minutes whether the weights,
the tokenizer, the preprocessing, the class order and the evaluation are
right. It builds the Runner of a CVLP config with no checkpoint, so the
towers hold the ``pretrained`` CLIP weights CVLP starts from, and runs its
test loop: ``CVLP.predict`` against the class prototypes (with
``--prototypes prompts``, CLIP's protocol: per class, the mean of the
L2-normalised embeddings of its prompt sentences, the 80 CLIP templates,
renormalised) scored by the config's ``LongTailAccuracy``: overall, many,
medium and few accuracy. For a shipped ResNet-50 benchmark config
(ImageNet-LT, Places-LT, iNaturalist 2018) the paper's zero-shot CLIP
figures (Tables 1-3) are printed next to the measured ones; docs/
zero_shot.md says what a large miss usually means.

The model and the evaluator are the config's own, the ones that validate
CVLP during training; this tool only leaves the checkpoint out and, with
``--split val``, tests on the val loader and evaluator. The numbers go to
the console and to ``zero_shot.json`` in the work dir. Distributed and CPU
runs are set up as ``tools/test.py`` does.

Examples::

    python tools/analysis/zero_shot.py configs/vlltr/cvlp_r50_imagenet-lt.py \\
        --cfg-options model.backbone.pretrained=data/clip/RN50.pt \\
                      model.text_encoder.pretrained=data/clip/RN50.pt
    PYTHONPATH=. python -m torch.distributed.run --nproc_per_node 8 \\
        tools/analysis/zero_shot.py configs/vlltr/cvlp_r50_places-lt.py \\
        --launcher pytorch
"""
import argparse
import json
import math
import os.path as osp

from mmengine.config import Config

from vlltr_mm.datasets.class_text.class_order import check_class_order
from vlltr_mm.utils.tool_config import (
    add_cfg_options,
    add_launcher_args,
    load_config,
    parse_tool_args,
    run_runner,
)

#: Zero-shot CLIP ResNet-50 on the test split in the paper (%): Tables 1-3.
PAPER = {
    'ImageNet-LT': ('Table 1', dict(overall=59.8, many=60.8, medium=59.3,
                                    few=58.6)),
    'Places-LT': ('Table 2', dict(overall=38.0, many=37.5, medium=37.5,
                                  few=40.1)),
    'iNaturalist 2018': ('Table 3', dict(overall=3.4)),
}
#: How to know a benchmark from its dataset config: list-file prefix (or
#: dataset type) and class count.
BENCHMARKS = (('ImageNet-LT', 'ImageNet_LT_', 1000),
              ('Places-LT', 'Places_LT_', 365),
              ('iNaturalist 2018', 'INaturalist2018', 8142))
#: ``LongTailAccuracy`` results shown, by the names used here.
METRICS = dict(overall='accuracy/top1', many='accuracy/many',
               medium='accuracy/medium', few='accuracy/few')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a CVLP config')
    parser.add_argument(
        '--split', choices=['test', 'val'], default='test',
        help='evaluate on the test split (the paper\'s) or on val '
        '(default test)')
    parser.add_argument(
        '--prototypes', choices=['prompts', 'all'], default='prompts',
        help='sentences averaged into each class prototype: the prompt '
        'templates, as zero-shot CLIP (default), or every sentence of the '
        'class text')
    parser.add_argument(
        '--work-dir', help='logs and zero_shot.json (default: '
        'work_dirs/zero_shot/<config name>)')
    add_cfg_options(parser)
    add_launcher_args(parser)
    return parse_tool_args(parser, argv)


def benchmark_of(dataset: dict):
    """The paper benchmark a dataset config is, or None.

    Args:
        dataset (dict): A dataloader's ``dataset`` config.

    Returns:
        str | None: A key of :data:`PAPER`.
    """
    ann_file = osp.basename(str(dataset.get('ann_file', '')))
    for name, marker, num_classes in BENCHMARKS:
        if dataset.get('num_classes') == num_classes and (
                ann_file.startswith(marker)
                or dataset.get('type') == marker):
            return name
    return None


def paper_figures(cfg: Config, split: str):
    """The paper's zero-shot CLIP figures that this run should reproduce.

    Args:
        cfg (Config): The zero-shot config (test loader already chosen).
        split (str): ``'test'`` or ``'val'``.

    Returns:
        tuple: ``(figures, note)``: ``{name: %}`` or None, and a line that
        says where the figures come from or why there are none.
    """
    name = benchmark_of(cfg.test_dataloader.dataset)
    if name is None:
        return None, ('not a shipped benchmark (ImageNet-LT, Places-LT, '
                      'iNaturalist 2018): no paper figure to compare with')
    arch = cfg.model.backbone.get('model_name')
    if arch != 'RN50':
        return None, (f'the paper reports zero-shot CLIP on {name} for '
                      f'ResNet-50 only, not {arch}')
    table, figures = PAPER[name]
    note = (f'paper: zero-shot CLIP ResNet-50 on {name} test ({table}); '
            '+-1 point is normal')
    if split == 'val' and name != 'iNaturalist 2018':
        # iNat's val split is its test split (paper §4.1).
        note += '; this run is on val, the paper on test'
    return figures, note


def zero_shot_config(cfg: Config, args) -> Config:
    """Turn a CVLP config into its zero-shot test run (in place).

    Args:
        cfg (Config): The merged config.
        args (Namespace): The command line.

    Returns:
        Config: ``cfg``: no checkpoint, the chosen split as the test loop,
        the chosen prototypes, the work dir and the launcher.

    Raises:
        SystemExit: If the config does not build a CVLP model.
    """
    model_type = cfg.get('model', {}).get('type')
    if model_type != 'CVLP':
        raise SystemExit(
            f'{args.config} builds {model_type}, not CVLP: zero-shot '
            'classification needs a CVLP config (configs/vlltr/cvlp_*.py).')
    cfg.model.prototype_sentences = args.prototypes
    if args.split == 'val':
        cfg.test_dataloader = cfg.val_dataloader
        cfg.test_evaluator = cfg.val_evaluator
    # The initial model: the towers' pretrained weights, nothing loaded.
    cfg.load_from = None
    cfg.resume = False
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    else:
        cfg.work_dir = osp.join('./work_dirs', 'zero_shot',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.launcher = args.launcher
    return cfg


def check_classes(runner, split: str) -> None:
    """Refuse a test set whose labels the class prototypes do not follow.

    Prototype c is built from class c of the model's class text and scored
    as label c of the test set, so the two class lists must agree in
    order; training checks its own set (``ClassTextDataset``), the test
    loop does not.

    Args:
        runner (Runner): Its test loop (built here) and model.
        split (str): For messages.

    Raises:
        SystemExit: If a class is at another position in the other list
            (names that match nowhere are only warned about).
    """
    dataset = runner.test_loop.dataloader.dataset
    classes = dataset.metainfo.get('classes')
    if classes is None:
        return
    corpus = getattr(runner.model, 'module', runner.model).corpus
    source = getattr(dataset, 'classes_source', None) or type(
        dataset).__name__
    try:
        check_class_order(
            classes, f'the {split} set ({source})', corpus.class_names,
            f'the class text ({corpus.class_names_source})',
            source if osp.isfile(str(source)) else None)
    except ValueError as error:
        raise SystemExit(f'zero-shot: {error}') from None


def _cell(value) -> str:
    return 'n/a' if value is None or math.isnan(value) else f'{value:.1f}'


def report_lines(measured: dict, figures, note: str, title: str) -> list:
    """The console report: measured and paper figures side by side.

    Args:
        measured (dict): ``{name: %}`` for the names of :data:`METRICS`.
        figures (dict, optional): The paper's ``{name: %}``.
        note (str): Where the figures come from, or why there are none.
        title (str): First line.

    Returns:
        list[str]: Lines to print.
    """
    names = list(METRICS)
    lines = [title, f"{'':10}" + ''.join(f'{n:>9}' for n in names),
             f"{'measured':10}" + ''.join(
                 f'{_cell(measured.get(n)):>9}' for n in names)]
    if figures:
        lines.append(f"{'paper':10}" + ''.join(
            f'{_cell(figures.get(n)):>9}' for n in names))
        lines.append(f"{'diff':10}" + ''.join(
            f'{measured[n] - figures[n]:>+9.1f}' if n in figures
            and not math.isnan(measured.get(n, math.nan)) else f"{'':>9}"
            for n in names))
    lines.append(note)
    return lines


def main(argv=None):
    """Run the zero-shot test; returns what ``zero_shot.json`` holds."""
    args = parse_args(argv)
    # As tools/test.py; data_root / text_root move every path under them.
    cfg = load_config(args.config, args.cfg_options)
    cfg = zero_shot_config(cfg, args)
    figures, note = paper_figures(cfg, args.split)
    towers = {k: cfg.model[k].get('pretrained')
              for k in ('backbone', 'text_encoder')}

    def test(runner):
        check_classes(runner, args.split)
        return runner.test()

    metrics, main_process = run_runner(cfg, 'zero-shot testing', test)
    measured = {n: float(metrics[k]) for n, k in METRICS.items()
                if k in metrics}
    result = dict(config=args.config, split=args.split,
                  prototypes=args.prototypes, pretrained=towers,
                  measured=measured, paper=figures, note=note)
    if main_process:
        title = (f'Zero-shot {args.config} (initial weights: '
                 f"{towers['backbone']}), {args.split} split, "
                 f'prototypes: {args.prototypes}')
        if not all(towers.values()):
            title += ('\nWARNING: a tower has no pretrained weights '
                      '(random init): expect chance accuracy')
        print('\n'.join(report_lines(measured, figures, note, title)),
              flush=True)
        with open(osp.join(cfg.work_dir, 'zero_shot.json'), 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
