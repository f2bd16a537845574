import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """An in-process reference with the thread count of a worker process or a one-CPU Ray
    chunk (float32 sums depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def required_columns():
    """Columns the foundation issue requires in every results table."""
    return (
        "study",
        "setting",
        "method",
        "n_main",
        "rescale",
        "init_scale",
        "seed",
        "steps",
        "status",
        "train_loss",
        "test_loss",
    )


@pytest.fixture
def required_subspace_columns():
    """Columns the subspace issue requires in the study's results table."""
    return (
        "part",
        "features",
        "downstream_task",
        "d",
        "r",
        "T",
        "m",
        "n_down",
        "round",
        "seed",
        "test_acc",
        "energy",
        "sin_max",
        "coverage",
        "n_dirs",
    )
