"""Common base of the modules that keep one tower of an open_clip model."""
from operator import attrgetter
from typing import Iterator, List, NamedTuple, Optional, Tuple, Union

import open_clip
from mmengine.model import BaseModule, initialize
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .factory import build_open_clip

StageMember = Union[nn.Module, nn.Parameter]


class StageLayout(NamedTuple):
    """Where the stages of one kind of tower live, as attribute paths.

    Stage 0 is the stem, stage k >= 1 is block k.

    Args:
        stem (tuple[str]): Paths (from the tower) of the stem's modules and
            parameters.
        blocks (str | tuple[str]): Path of a sequence whose elements are
            the blocks, or one path per block.
    """
    stem: Tuple[str, ...]
    blocks: Union[str, Tuple[str, ...]]


class OpenCLIPTower(BaseModule):
    """Keep one tower of an open_clip model, with freezing options.

    Subclasses name the tower (:attr:`tower_name`), declare where its
    stages are (:attr:`stage_layouts`) and implement :meth:`_keep_tower`
    (store the tower, the rest of the model is dropped with the local
    reference); freezing and eval-mode handling live here.

    Frozen parts (the whole tower with ``frozen``, stages 0 ..
    ``frozen_stages`` otherwise) get no gradients and stay in eval mode
    whenever :meth:`train` runs; with ``norm_eval`` every BatchNorm layer
    does too.

    Weights come from open_clip at construction (``pretrained``), so
    :meth:`init_weights` does not re-run the initialisers of the tower's
    submodules (timm and Hugging Face towers define ``init_weights`` methods
    that would overwrite them); only an explicit ``init_cfg`` is applied.

    Args:
        model_name (str): open_clip model name, see
            :func:`~.build_open_clip`.
        pretrained (str, optional): open_clip pretrained tag or local
            weights file. Defaults to None (random initialisation).
        frozen (bool): Freeze the whole tower. Defaults to False.
        frozen_stages (int): Freeze stages 0 .. ``frozen_stages``; -1
            freezes none. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm layer in eval mode during
            training (running statistics fixed). Defaults to False.
        quick_gelu (bool, optional): QuickGELU switch of
            :func:`~.build_open_clip`. Defaults to None (automatic).
        clip_model (nn.Module, optional): A model already built by
            :func:`~.build_open_clip` to take the tower
            from instead of building one (``pretrained`` and ``quick_gelu``
            are then ignored). Defaults to None.
        init_cfg (dict | list[dict], optional): MMEngine init config,
            applied by :meth:`init_weights` on top of the loaded weights.
            Defaults to None.
    """

    #: Attribute of the open_clip model (and of this module) holding the
    #: tower: ``'visual'`` or ``'text'``.
    tower_name: str = ''
    #: The stage layouts this tower may have, tried in order; the first
    #: whose paths all exist is used.
    stage_layouts: Tuple[StageLayout, ...] = ()

    def __init__(self,
                 model_name: str,
                 pretrained: Optional[str] = None,
                 frozen: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 quick_gelu: Optional[bool] = None,
                 clip_model: Optional[nn.Module] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        if clip_model is None:
            clip_model = build_open_clip(model_name, pretrained, quick_gelu)
        self.model_name = model_name
        self.pretrained = pretrained
        self.frozen = frozen
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        # CLIP stores log(1 / tau); kept as a float for CVLP's own scale.
        self.init_logit_scale = float(
            clip_model.logit_scale.detach().float().reshape(-1)[0])
        self._keep_tower(clip_model)
        if frozen_stages != -1:
            num_stages = len(self._stages())
            if not 0 <= frozen_stages < num_stages:
                raise ValueError(
                    f'frozen_stages must be in [-1, {num_stages - 1}] for '
                    f"'{model_name}', got {frozen_stages}")
        self._freeze()

    def _keep_tower(self, clip_model: nn.Module) -> None:
        """Store the tower this module keeps as a submodule."""
        raise NotImplementedError

    def _config_embed_dim(self) -> int:
        """Embedding size D from the open_clip config of ``model_name``."""
        cfg = open_clip.get_model_config(self.model_name.replace('/', '-'))
        if cfg is None or 'embed_dim' not in cfg:
            raise ValueError(
                f"Cannot tell the embedding size of '{self.model_name}'.")
        return int(cfg['embed_dim'])

    def _stages(self) -> List[List[StageMember]]:
        """The tower's stages in order, as lists of modules / parameters."""
        tower = getattr(self, self.tower_name)
        for stem, blocks in self.stage_layouts:
            try:
                stage0 = [attrgetter(path)(tower) for path in stem]
                if isinstance(blocks, str):
                    blocks = list(attrgetter(blocks)(tower))
                else:
                    blocks = [attrgetter(path)(tower) for path in blocks]
            except AttributeError:
                continue
            return [stage0] + [[block] for block in blocks]
        raise NotImplementedError(
            f'frozen_stages is not supported for {type(tower).__name__} '
            f"{self.tower_name} towers (model '{self.model_name}'); use "
            'frozen=True to freeze the whole tower')

    def _frozen_members(self) -> List[StageMember]:
        """Modules and parameters that get no gradient and stay in eval."""
        if self.frozen:
            return [self]
        return [member for stage in self._stages()[:self.frozen_stages + 1]
                for member in stage] if self.frozen_stages >= 0 else []

    def _eval_modules(self) -> Iterator[nn.Module]:
        """Modules put back in eval mode whenever :meth:`train` runs."""
        for member in self._frozen_members():
            if isinstance(member, nn.Module):
                yield member
        if self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    yield module

    def _freeze(self) -> None:
        """Turn off gradients of :meth:`_frozen_members`."""
        for member in self._frozen_members():
            params = [member] if isinstance(member, nn.Parameter) else \
                member.parameters()
            for param in params:
                param.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> 'OpenCLIPTower':
        """Set train / eval mode, keeping frozen parts in eval mode."""
        super().train(mode)
        if mode:
            for module in self._eval_modules():
                # ``nn.Module.train`` so that ``self`` does not recurse.
                nn.Module.train(module, False)
        return self

    def init_weights(self) -> None:
        """Apply ``init_cfg`` only; the tower's weights are already set."""
        if not self._is_init and self.init_cfg:
            initialize(self, self.init_cfg)
        self._is_init = True
