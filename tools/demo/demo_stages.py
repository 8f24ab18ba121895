"""The demo's stages and how each is run through ``tools/*.py``.

Every training stage is a fresh ``tools/train.py`` process, as a user runs
it; ``demo_eval.py`` tests all of a seed's rows in one process. The
configs in ``configs/vlltr/demo/`` describe Fashion-MNIST-LT; for any other
dataset in the list format, :func:`dataset_options` finds every
dataset-specific field of a config (list files, data root, class count,
class-text files) and overrides it with ``--cfg-options``, so no config
needs editing.
"""
import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'vlltr', 'demo')


class Stage(NamedTuple):
    """A training stage: ``start`` is the stage whose checkpoint it loads
    (None: the demo CLIP file); epochs are (full run, ``--quick``);
    ``cost`` is the seconds of one epoch in the recorded 2-core run, a
    weight for the progress estimate only."""
    name: str
    config: str
    epochs: Tuple[int, int]
    start: Optional[str]
    cost: float


class Method(NamedTuple):
    """A table row: the checkpoint of ``run`` tested with ``config``;
    ``select`` names what is chosen on the val split (``''``: nothing,
    ``'tau'``, ``'alpha'`` or ``'alpha+tau'``)."""
    label: str
    run: str
    config: str
    select: str
    paper: str


STAGES = [
    Stage('cvlp', 'cvlp_demo_fmnist-lt.py', (10, 1), None, 17.0),
    Stage('lgr', 'lgr_demo_fmnist-lt.py', (8, 1), 'cvlp', 3.0),
    Stage('lgr-cutoff', 'lgr-cutoff_demo_fmnist-lt.py', (8, 1), 'cvlp',
          3.0),
    Stage('lgr-nocvlp', 'lgr-nocvlp_demo_fmnist-lt.py', (8, 1),
          'cvlp-init', 3.0),
    Stage('fc', 'fc_demo_fmnist-lt.py', (8, 1), 'cvlp', 2.2),
    # As many epochs as CVLP + LGR together (the paper's baseline budget).
    Stage('baseline', 'baseline_demo_fmnist-lt.py', (18, 2), None, 9.4),
]
METHODS = [
    Method('Baseline (vision only, FC, fine-tuned)', 'baseline',
           'baseline_demo_fmnist-lt.py', '', 'Table 1'),
    Method('Baseline + logit adjustment', 'baseline',
           'baseline-la_demo_fmnist-lt.py', 'tau', 'Menon et al. 2021'),
    Method('Zero-shot (CVLP text prototypes)', 'cvlp',
           'cvlp_demo_fmnist-lt.py', '', 'Table 1'),
    Method('FC head on CVLP features', 'fc', 'fc_demo_fmnist-lt.py', '',
           'Table 4 #5'),
    Method('LGR without CVLP (initial model)', 'lgr-nocvlp',
           'lgr-nocvlp_demo_fmnist-lt.py', 'alpha', 'Table 4 #2'),
    Method('LGR + cut-off anchors', 'lgr-cutoff',
           'lgr-cutoff_demo_fmnist-lt.py', 'alpha', 'Table 4 #7'),
    Method('VL-LTR (LGR + AnSS)', 'lgr', 'lgr_demo_fmnist-lt.py', 'alpha',
           'Table 1, Table 4 #1'),
    Method('VL-LTR + logit adjustment', 'lgr', 'lgr-la_demo_fmnist-lt.py',
           'alpha+tau', 'VL-LTR + Menon et al.'),
]


def log(msg: str) -> None:
    print(f'[demo {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def load_tool(name: str, rel_path: str):
    """A script of this repository as a module named ``name`` (by path:
    ``tools`` is no package)."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset_options(config: str, data: dict) -> List[str]:
    """``--cfg-options`` that point a demo config at another dataset.

    Walks the loaded config and overrides, wherever they occur: the
    ``data_root`` / ``ann_file`` of each ``LongTailListDataset`` (the split
    is the dataloader it sits in), every ``num_classes``, every
    ``train_ann_file``, the files of every ``ClassTextCorpus`` and every
    ``pretrained`` that names the demo CLIP file.

    Args:
        config (str): Config path.
        data (dict): ``data_root``, ``ann_files`` (split -> path),
            ``classes``, ``text_labels_file`` and ``wiki_dir`` of the text,
            ``checkpoint`` (the demo CLIP file).

    Returns:
        list[str]: ``key=value`` strings.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(config).to_dict()
    opts = {}

    def walk(node, path):
        if isinstance(node, dict):
            kind = node.get('type')
            if kind == 'LongTailListDataset':
                split = path.split('_dataloader')[0].split('.')[-1]
                opts[f'{path}.data_root'] = data['data_root']
                opts[f'{path}.ann_file'] = data['ann_files'][split]
            elif kind == 'ClassTextCorpus':
                opts[f'{path}.labels_file'] = data['text_labels_file']
                opts[f'{path}.wiki_dir'] = data['wiki_dir']
            for key, value in node.items():
                sub = f'{path}.{key}' if path else key
                if key == 'num_classes' and isinstance(value, int):
                    opts[sub] = len(data['classes'])
                elif key == 'train_ann_file' and value:
                    opts[sub] = data['ann_files']['train']
                elif key == 'pretrained' and str(value).endswith(
                        'demo_clip.pth'):
                    opts[sub] = data['checkpoint']
                else:
                    walk(value, sub)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f'{path}.{i}')

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator', 'model',
                'data_preprocessor', 'custom_hooks'):
        if key in cfg:
            walk(cfg[key], key)
    return [f'{k}={v}' for k, v in opts.items()]


# Tool processes now running, so that one failure can stop the others.
_LIVE = set()
_LIVE_LOCK = threading.Lock()


def run_tool(tool: str, argv: List[str], log_file: str,
             threads: Optional[int] = None) -> None:
    """Run ``tools/<tool>`` in a fresh process, output to ``log_file``.

    Args:
        threads (int, optional): CPU threads of the process (None: torch's
            default, one per core). Defaults to None.

    Raises:
        RuntimeError: If the tool fails; the message holds the log's tail.
    """
    os.makedirs(osp.dirname(log_file), exist_ok=True)
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log_file, 'w') as f:
        proc = subprocess.Popen(
            [sys.executable, osp.join(REPO, 'tools', tool), *argv],
            cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            code = proc.wait()
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    if code:
        with open(log_file) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f'tools/{tool} failed (exit {code}); '
                           f'log {log_file}:\n{tail}')


def stop_tools() -> None:
    """Terminate the tool processes this runner started that still run."""
    with _LIVE_LOCK:
        for proc in _LIVE:
            proc.terminate()


class StageRunner:
    """Trains and tests the demo stages of one seed in ``work_dir``.

    Args:
        work_dir (str): This seed's folder; stage ``x`` lives in ``x/``.
        data (dict): Dataset and text description (see
            :func:`dataset_options`) plus ``checkpoint``, the demo CLIP file.
        seed (int): ``randomness.seed`` of every stage.
        quick (bool): Use the short epoch counts.
        force (bool): Retrain stages whose checkpoint exists.
        threads (int, optional): CPU threads per tool process (None: one
            per core). Defaults to None.
    """

    def __init__(self, work_dir: str, data: dict, seed: int, quick: bool,
                 force: bool, threads: Optional[int] = None):
        self.work_dir = work_dir
        self.data = data
        self.seed = seed
        self.quick = quick
        self.force = force
        self.threads = threads
        self._data_opts: Dict[str, List[str]] = {}

    def epochs(self, stage: Stage) -> int:
        return stage.epochs[1] if self.quick else stage.epochs[0]

    def ckpt(self, name: str) -> str:
        if name == 'cvlp-init':
            return osp.join(self.work_dir, 'cvlp-init.pth')
        return osp.join(self.work_dir, name, 'last.pth')

    def options(self, config: str, evaluate: bool = False) -> List[str]:
        """``--cfg-options`` of ``config`` for this seed and dataset.

        Args:
            config (str): A file of ``configs/vlltr/demo``.
            evaluate (bool): For testing: the val / test loaders load in
                the main process (their pipeline has no randomness, so the
                numbers are the same; workers would compete with the
                stage trained beside). Defaults to False.
        """
        if config not in self._data_opts:
            self._data_opts[config] = dataset_options(
                osp.join(CFG, config), self.data)
        opts = [f'randomness.seed={self.seed}'] + self._data_opts[config]
        # Smoke runs: forking loader workers costs more than the few
        # images they would load. The full run keeps the training workers:
        # their seeds decide the augmentation of each image.
        loaders = ('train', 'val', 'test') if self.quick else \
            ('val', 'test') if evaluate else ()
        opts += [f'{k}_dataloader.num_workers=0' for k in loaders]
        return opts

    def init_checkpoint(self) -> float:
        """The initial model in the CVLP layout (for Table 4 #2)."""
        path = self.ckpt('cvlp-init')
        if osp.isfile(path) and not self.force:
            return 0.0
        start = time.time()
        run_tool('model_converters/cvlp_init_checkpoint.py', [
            osp.join(CFG, STAGES[0].config), path, '--cfg-options',
            *self.options(STAGES[0].config)
        ], osp.join(self.work_dir, 'logs', 'cvlp-init.log'), self.threads)
        return time.time() - start

    def train(self, stage: Stage) -> float:
        """Train one stage; returns seconds (0: its checkpoint exists and
        ``force`` is off, nothing done)."""
        run_dir = osp.join(self.work_dir, stage.name)
        ckpt = self.ckpt(stage.name)
        if osp.isfile(ckpt) and not self.force:
            return 0.0
        # An interrupted or forced earlier run's checkpoints: this run
        # starts afresh, it does not resume them.
        for old in glob.glob(osp.join(run_dir, '*.pth')) + [
                osp.join(run_dir, 'last_checkpoint')]:
            if osp.isfile(old) and not old.endswith('anss_anchors.pth'):
                os.remove(old)
        epochs = self.epochs(stage)
        opts = self.options(stage.config) + [f'train_cfg.max_epochs={epochs}']
        if stage.start is not None:
            opts.append(f'load_from={self.ckpt(stage.start)}')
        if stage.name in ('cvlp', 'baseline'):
            # Warm-up epoch, then the cosine phase over the rest.
            # (A 1-epoch smoke run keeps a non-empty, unused cosine phase.)
            opts += [f'param_scheduler.1.T_max={max(epochs - 1, 1)}',
                     f'param_scheduler.1.end={max(epochs, 2)}']
        else:
            opts.append(f'param_scheduler.T_max={epochs}')
        log(f'seed {self.seed} {stage.name}: training {epochs} epoch(s) '
            f'({stage.config})')
        start = time.time()
        run_tool('train.py', [
            osp.join(CFG, stage.config), '--work-dir', run_dir,
            '--cfg-options', *opts
        ], osp.join(self.work_dir, 'logs', f'train_{stage.name}.log'),
                 self.threads)
        os.replace(osp.join(run_dir, f'epoch_{epochs}.pth'), ckpt)
        return time.time() - start
