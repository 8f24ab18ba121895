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
