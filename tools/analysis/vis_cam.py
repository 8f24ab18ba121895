"""MMPretrain's ``vis_cam`` (Grad-CAM) on configs with frozen towers.

The stock tool (``mmpretrain/.mim/tools/visualization/vis_cam.py``) takes
the gradient at a backbone layer. A frozen tower (``frozen=True`` or
``frozen_stages``, as in every LGR config) computes none, and the stock tool
then fails inside pytorch_grad_cam with numpy's ``AxisError: axis 2 is out
of bounds for array of dimension 0``. Freezing only concerns training, so
this wrapper runs the stock tool unchanged except that the model it builds
has every parameter set to require a gradient (the same weights; only the
CAM's backward pass sees the difference, nothing is trained or saved).

The stock tool passes ``use_cuda`` to pytorch_grad_cam, which grad-cam 1.5
no longer accepts: install ``grad-cam>=1.3.7,<1.5``.

Example (arguments and options are the stock tool's)::

    python tools/analysis/vis_cam.py IMAGE \\
        configs/vlltr/lgr_r50_imagenet-lt.py \\
        work_dirs/lgr_r50_imagenet-lt/epoch_50.pth --save-path cam.png
"""
import inspect
import sys
from typing import List, Optional

from mmpretrain_stock import load_stock_tool, run_stock_main

CAM_REQUIREMENT = 'grad-cam>=1.3.7,<1.5'


def _check_grad_cam() -> None:
    """Stop with the fix when pytorch_grad_cam is missing or too new."""
    try:
        from pytorch_grad_cam.base_cam import BaseCAM
    except ImportError:
        sys.exit(f'vis_cam needs pytorch_grad_cam: pip install '
                 f'"{CAM_REQUIREMENT}"')
    if 'use_cuda' not in inspect.signature(BaseCAM.__init__).parameters:
        sys.exit('MMPretrain 1.2\'s vis_cam passes use_cuda to '
                 'pytorch_grad_cam, which grad-cam >= 1.5 removed: pip '
                 f'install "{CAM_REQUIREMENT}"')


def main(argv: Optional[List[str]] = None) -> None:
    """Run the stock vis_cam with gradients on every parameter.

    Args:
        argv (list[str], optional): The stock tool's arguments. Defaults to
            None (the command line).
    """
    _check_grad_cam()
    tool = load_stock_tool('visualization/vis_cam.py')
    build_model = tool.get_model

    def get_model_with_gradients(*args, **kwargs):
        model = build_model(*args, **kwargs)
        # Frozen towers set requires_grad=False; Grad-CAM needs the
        # gradient at a layer inside them.
        model.requires_grad_(True)
        return model

    tool.get_model = get_model_with_gradients
    run_stock_main(tool, argv)


if __name__ == '__main__':
    main()
