"""Say once, at the start of a run, what the run is made of.

Registered as a default hook in ``configs/_base_/default_runtime.py``. It
replaces floods of per-item messages with single lines a person can read:

* ``before_run``: ``N frozen parameter tensors (M parameters) are not
  optimised: backbone.*`` instead of MMEngine's warning per tensor
  (:mod:`.frozen_params_log`).
* ``before_train`` (or ``before_test`` of a test-only run), rank 0: for an
  LGR head, the inference fusion ``alpha`` and post-hoc ``tau`` in use,
  the anchors (classes, M, filled / padded slots; the AnSS rule and the
  stage-1 checkpoint with a sha256 prefix, from this run's AnSS artifact
  or else the loaded checkpoint's ``meta['anss']`` record), and the
  checkpoint the run loaded (``load_from``, resumed or tested file, sha256
  prefix); a warning when an open_clip tower starts from random weights
  and no checkpoint was loaded (open_clip's own "initialized randomly" is
  not shown, see
  :func:`~vlltr_mm.models.open_clip_adapter.build_open_clip`).
"""
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.runner import find_latest_checkpoint
from mmpretrain.registry import HOOKS

from vlltr_mm.models.heads import LGRHead
from vlltr_mm.models.open_clip_adapter import OpenCLIPTower
from vlltr_mm.utils.files import file_sha256

from .anss_hook import AnchorSentenceSelectionHook
from .frozen_params_log import FrozenParamsFilter, frozen_params_summary

#: Hex digits of a sha256 shown in the log.
SHA_PREFIX = 12


def _fusion(head: LGRHead) -> str:
    alpha = head.alpha
    tau = head.posthoc_tau
    text = (f'alpha={alpha:g} (P = {alpha:g} P^I + {1 - alpha:g} P^T), '
            f'post-hoc tau={tau:g}')
    return text + (f' on the {head.posthoc_target} logits' if tau else
                   ' (no adjustment)')


def _anchors(head: LGRHead) -> str:
    num_classes, m = head.anchors.shape[:2]
    if not head.has_anchors:
        return f'anchors NOT set ({num_classes} classes x M={m})'
    filled = int(head.anchor_mask.sum())
    return (f'anchors {num_classes} classes x M={m} ({filled} filled, '
            f'{num_classes * m - filled} padded), text logit scale '
            f'{float(head.logit_scale):.4g}')


def _anss_meta(runner, record: Optional[dict]) -> Optional[dict]:
    """The AnSS record of this run's anchors (with the artifact's path),
    else ``record``, the loaded checkpoint's ``meta['anss']``."""
    for hook in runner.hooks:
        if isinstance(hook, AnchorSentenceSelectionHook) and hook.record:
            return hook.record
    return record


@HOOKS.register_module()
class RunSummaryHook(Hook):
    """Log a readable summary at the start of a run (see the module doc).

    The frozen-parameter filter is put on the runner's logger when the hook
    is built, i.e. inside ``Runner.__init__`` after the logger exists,
    because ``Runner.train`` builds the optimizer (and MMEngine warns)
    before the first hook method runs; ``before_run`` takes it off.
    """

    priority = 'LOW'  # before_train: after AnSS and ClassPriorHook

    def __init__(self):
        self._logger = MMLogger.get_current_instance()
        self._filter = FrozenParamsFilter()
        self._logger.addFilter(self._filter)
        self._loaded = False
        self._anss_record: Optional[dict] = None
        self._done = False

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        self._logger.removeFilter(self._filter)
        if self._filter.names:
            runner.logger.info(
                frozen_params_summary(self._filter.names,
                                      self._model(runner)))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = True
        self._anss_record = checkpoint.get('meta', {}).get('anss')

    def before_train(self, runner) -> None:
        self._summarise(runner, 'load_from')

    def before_test(self, runner) -> None:
        self._summarise(runner, 'checkpoint')

    def _loaded_file(self, runner, how: str) -> Tuple[Optional[str], str]:
        """(path, how) of the checkpoint loaded into the model, if any."""
        if not self._loaded:
            return None, ''
        path = getattr(runner, '_load_from', None)
        if getattr(runner, '_resume', False):
            return path or find_latest_checkpoint(runner.work_dir), \
                'resumed from'
        return path, how

    def _summarise(self, runner, how: str) -> None:
        if self._done:
            return
        self._done = True
        if not is_main_process():
            return  # the lines would be the same; spare the file reads
        model = self._model(runner)
        path, how = self._loaded_file(runner, how)
        if path is None:
            self._warn_random_towers(runner, model)
        parts: List[str] = []
        known = {}  # abspath -> sha256 already computed by AnSS
        head = getattr(model, 'head', None)
        if isinstance(head, LGRHead):
            parts += [f'LGR head: {_fusion(head)}', _anchors(head)]
            meta = _anss_meta(runner, self._anss_record)
            if meta:
                stage1 = meta.get('checkpoint')
                sha = str(meta.get('checkpoint_sha256', ''))
                known[stage1] = sha
                parts.append(
                    f"AnSS '{meta.get('selection')}' ({meta.get('artifact')})"
                    f' from stage-1 checkpoint {stage1} (sha256 '
                    f'{sha[:SHA_PREFIX]})')
        if path is not None:
            parts.append(f'weights {how} {path} '
                         f'(sha256 {self._sha(path, known)})')
        if parts:
            runner.logger.info('Run summary: ' + '; '.join(parts))

    @staticmethod
    def _sha(path: str, known: dict) -> str:
        if '://' in path or not osp.isfile(path):
            return 'n/a'
        sha = known.get(osp.abspath(path)) or file_sha256(path)
        return sha[:SHA_PREFIX]

    @staticmethod
    def _warn_random_towers(runner, model) -> None:
        random = [
            f"{name} ('{module.model_name}')"
            for name, module in model.named_modules()
            if isinstance(module, OpenCLIPTower) and module.pretrained is None
        ]
        if random:
            runner.logger.warning(
                f'{", ".join(random)}: random initial weights '
                '(pretrained=None) and no checkpoint loaded (load_from / '
                'resume); set one of them unless this is intended.')
