"""Fixtures shared by several test modules."""
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    """Run a module's tiny convolutions on one torch thread: on a shared
    2-core machine intra-op parallelism only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def load_tool(monkeypatch):
    """Import a script under ``tools/`` as a module, with its folder on
    ``sys.path`` (the scripts import their neighbours by name, as when run
    directly). Call it with the path relative to the repository."""
    import importlib.util
    import os.path as osp

    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))

    def load(rel_path: str):
        path = osp.join(repo, rel_path)
        monkeypatch.syspath_prepend(osp.dirname(path))
        name = osp.splitext(osp.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope='session')
def tiny_baseline_data():
    """Make tiny ImageNet-LT-format data (6 classes, 12 ... 3 training
    images) and return the ``--cfg-options`` that point the CE baseline
    config's loaders and evaluators at it. Call with the data folder and
    the test images per class."""
    import os.path as osp
    import subprocess
    import sys

    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))

    def make(data: str, test_per_class: int) -> list:
        subprocess.run([
            sys.executable, 'tools/data/make_tiny_lt.py', data, '--counts',
            '12', '8', '6', '4', '3', '3', '--val-per-class', '1',
            '--test-per-class', str(test_per_class)
        ], cwd=repo, check=True, capture_output=True)
        opts = []
        for key in ('train', 'val', 'test'):
            opts += [
                f'{key}_dataloader.dataset.data_root={data}',
                f'{key}_dataloader.num_workers=0',
                f'{key}_dataloader.batch_size=8'
            ]
        return opts + [
            f'{key}.train_ann_file={data}/ImageNet_LT_train.txt'
            for key in ('val_evaluator', 'test_evaluator')
        ]

    return make
