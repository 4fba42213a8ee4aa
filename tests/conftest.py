from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
REAL = ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip("../shared/data/real not present")
    return REAL


@pytest.fixture(scope="session", autouse=True)
def _warm_kernels():
    from qc_daemon.kernels import warm_up

    warm_up()


@pytest.fixture
def daemon(tmp_path):
    """The shared daemon of the end-to-end tests: (Daemon, bound endpoints, zmq context), serving in a thread."""
    from tests.daemon_support import running_daemon

    with running_daemon(tmp_path / "data") as d:
        yield d
