"""MMPretrain's ``verify_dataset`` on configs whose dataset is a wrapper.

The stock tool (``mmpretrain/.mim/tools/misc/verify_dataset.py``) reads
``pipeline`` from the dataset config of the chosen phase to find
``LoadImageFromFile``. The CVLP configs' training set is a
``ClassTextDataset`` around the image dataset, which holds the pipeline, so
the stock tool fails with ``'ConfigDict' object has no attribute
'pipeline'`` (as it does for MMEngine's ``RepeatDataset`` and
``ClassBalancedDataset``). This wrapper runs the stock tool unchanged
except that it is handed the innermost dataset config with a pipeline: the
same image files (the class text holds no image).

Example (arguments and options are the stock tool's)::

    python tools/analysis/verify_dataset.py \\
        configs/vlltr/cvlp_r50_imagenet-lt.py --out-path broken.txt
"""
from typing import List, Optional

from mmpretrain_stock import load_stock_tool, run_stock_main

STOCK = load_stock_tool('misc/verify_dataset.py')


def image_dataset_cfg(dataset_cfg):
    """The innermost config under ``dataset`` keys that has a pipeline.

    Args:
        dataset_cfg (ConfigDict): A dataset config, wrapped or not.

    Returns:
        ConfigDict: ``dataset_cfg`` itself when it has a ``pipeline``
        (or nothing to unwrap), else its wrapped dataset's, recursively.
    """
    while 'pipeline' not in dataset_cfg and isinstance(
            dataset_cfg.get('dataset'), dict):
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def main(argv: Optional[List[str]] = None) -> None:
    """Run the stock verify_dataset on the image dataset of a wrapper.

    Args:
        argv (list[str], optional): The stock tool's arguments. Defaults to
            None (the command line).
    """
    validator = STOCK.DatasetValidator
    stock_init = validator.__init__

    def init(self, dataset_cfg, log_file_path):
        stock_init(self, image_dataset_cfg(dataset_cfg), log_file_path)

    # The class itself stays (the tool calls super() on its name, and
    # --num-process > 1 pickles its instances by that name).
    validator.__init__ = init
    run_stock_main(STOCK, argv)


if __name__ == '__main__':
    main()
