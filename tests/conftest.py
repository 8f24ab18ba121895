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
