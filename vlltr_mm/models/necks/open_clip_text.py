"""The text tower of an open_clip model as an MMPretrain module."""
from typing import List, Optional, Union

import torch
from mmpretrain.registry import MODELS
from open_clip.transformer import TextTransformer
from torch import nn

from ..open_clip_adapter.tower import OpenCLIPTower, StageLayout


@MODELS.register_module()
class OpenCLIPTextEncoder(OpenCLIPTower):
    """CLIP text encoder E_lin of VL-LTR (paper §3.1) from open_clip.

    Keeps only the text tower of an open_clip model: CLIP's causal text
    transformer (token and position embeddings, transformer, final
    LayerNorm, projection) or a Hugging Face tower of an HF-text config.
    Maps token ids from the matching tokenizer
    (``open_clip.get_tokenizer(model_name)``) to text embeddings.

    Args:
        model_name (str): open_clip model name, e.g. ``'RN50'``,
            ``'ViT-B-16'`` or ``'vlltr-tiny-rn'``.
        pretrained (str, optional): open_clip pretrained tag or local file,
            as for :class:`~vlltr_mm.models.backbones.OpenCLIPVisual`.
            Defaults to None (random).
        frozen (bool): Freeze the whole tower and keep it in eval mode.
            Defaults to False.
        frozen_stages (int): Freeze stages 0 .. ``frozen_stages``; -1
            freezes none. Stage 0 is the token (and position) embedding,
            stage k (k >= 1) is transformer layer k, for CLIP's text
            transformer and for Hugging Face (BERT-style) towers alike; the
            final norm, pooling and projection are never frozen by stage.
            Defaults to -1.
        quick_gelu (bool, optional): Force QuickGELU on / off; None decides
            from the weights (see ``build_open_clip``). Defaults to None.
        trim_padding (bool): Drop the trailing columns that are padding in
            every sentence of a batch before a Hugging Face tower runs (its
            attention mask and pooling skip padding, so the embeddings are
            the same up to float rounding, for less work on short
            sentences). CLIP's causal tower needs the full context length,
            so it refuses the option. Defaults to False.
        clip_model (nn.Module, optional): Prebuilt model from
            ``build_open_clip`` to take the text tower from. Defaults to
            None.
        init_cfg (dict | list[dict], optional): MMEngine init config,
            applied on top of the loaded weights. Defaults to None.

    Attributes:
        embed_dim (int): Embedding size D.
        context_length (int): Token sequence length L the tower expects
            (77 for CLIP).
        init_logit_scale (float): The model's logit scale, log-space.
    """

    tower_name = 'text'
    stage_layouts = (
        # CLIP's text transformer.
        StageLayout(('token_embedding', 'positional_embedding'),
                    'transformer.resblocks'),
        # Hugging Face (BERT-style) towers.
        StageLayout(('transformer.embeddings', ), 'transformer.encoder.layer'),
    )

    def __init__(self,
                 model_name: str,
                 pretrained: Optional[str] = None,
                 frozen: bool = False,
                 frozen_stages: int = -1,
                 quick_gelu: Optional[bool] = None,
                 trim_padding: bool = False,
                 clip_model: Optional[nn.Module] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(
            model_name,
            pretrained=pretrained,
            frozen=frozen,
            frozen_stages=frozen_stages,
            quick_gelu=quick_gelu,
            clip_model=clip_model,
            init_cfg=init_cfg)
        pad_id = getattr(getattr(self.text, 'config', None),
                         'pad_token_id', None)
        if trim_padding and (isinstance(self.text, TextTransformer)
                             or pad_id is None):
            raise ValueError(
                f'trim_padding needs a Hugging Face text tower with a pad '
                f'token; {model_name} has CLIP\'s causal text transformer, '
                'which reads the full context length')
        self.pad_id = pad_id if trim_padding else None

    def _keep_tower(self, clip_model: nn.Module) -> None:
        self.text = clip_model.text
        self.embed_dim = getattr(self.text, 'output_dim', None) or \
            self._config_embed_dim()
        self.context_length = int(self.text.context_length)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embed tokenised sentences with CLIP's text encoder.

        Args:
            tokens (Tensor): Token ids, [B, L] long, L = ``context_length``
                for CLIP's transformer (its causal mask has that size).

        Returns:
            Tensor: Text embeddings E^T [B, D], not normalised.
        """
        if tokens.dim() != 2:
            raise ValueError(
                f'tokens must be [B, L], got shape {tuple(tokens.shape)}')
        if isinstance(self.text, TextTransformer) and \
                self.text.attn_mask is not None and \
                tokens.shape[1] != self.context_length:
            raise ValueError(
                f'tokens must have length {self.context_length} (the '
                f'context length of {self.model_name}), got '
                f'{tokens.shape[1]}')
        if self.pad_id is not None:
            used = (tokens != self.pad_id).any(0).nonzero()
            if len(used):
                tokens = tokens[:, :int(used.max()) + 1]
        return self.text(tokens)
