"""Common base of the modules that keep one tower of an open_clip model."""
from typing import Iterator, List, Optional, Union

import open_clip
from mmengine.model import BaseModule, initialize
from torch import nn

from .factory import build_open_clip

StageMember = Union[nn.Module, nn.Parameter]


class OpenCLIPTower(BaseModule):
    """Keep one tower of an open_clip model, with freezing options.

    Subclasses implement :meth:`_keep_tower` (store the tower they need,
    the rest of the model is dropped with the local reference) and may
    extend :meth:`_frozen_members` / :meth:`_eval_modules`.

    Weights come from open_clip at construction (``pretrained``), so
    :meth:`init_weights` does not re-run the initialisers of the tower's
    submodules (timm and Hugging Face towers define ``init_weights`` methods
    that would overwrite them); only an explicit ``init_cfg`` is applied.

    Args:
        model_name (str): open_clip model name, see
            :func:`~.build_open_clip`.
        pretrained (str, optional): open_clip pretrained tag or local
            weights file. Defaults to None (random initialisation).
        frozen (bool): Freeze the whole tower: no gradients, and kept in
            eval mode by :meth:`train`. Defaults to False.
        quick_gelu (bool, optional): QuickGELU switch of
            :func:`~.build_open_clip`. Defaults to None
            (automatic).
        clip_model (nn.Module, optional): A model already built by
            :func:`~.build_open_clip` to take the tower
            from instead of building one (``pretrained`` and ``quick_gelu``
            are then ignored). Defaults to None.
        init_cfg (dict | list[dict], optional): MMEngine init config,
            applied by :meth:`init_weights` on top of the loaded weights.
            Defaults to None.
    """

    def __init__(self,
                 model_name: str,
                 pretrained: Optional[str] = None,
                 frozen: bool = False,
                 quick_gelu: Optional[bool] = None,
                 clip_model: Optional[nn.Module] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        if clip_model is None:
            clip_model = build_open_clip(model_name, pretrained, quick_gelu)
        self.model_name = model_name
        self.pretrained = pretrained
        self.frozen = frozen
        # CLIP stores log(1 / tau); kept as a float for CVLP's own scale.
        self.init_logit_scale = float(
            clip_model.logit_scale.detach().float().reshape(-1)[0])
        self._keep_tower(clip_model)

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

    def _frozen_members(self) -> List[StageMember]:
        """Modules and parameters that get no gradient and stay in eval."""
        return [self] if self.frozen else []

    def _eval_modules(self) -> Iterator[nn.Module]:
        """Modules put back in eval mode whenever :meth:`train` runs."""
        for member in self._frozen_members():
            if isinstance(member, nn.Module):
                yield member

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
