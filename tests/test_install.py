"""A non-editable install finds its yaml files from any working directory."""

import os
import subprocess
import sys

import pytest

from conftest import REPO


def test_installed_package_carries_properties_and_dataset_configs(tmp_path):
    # Asked of the interpreter itself, outside the checkout and without PYTHONPATH: package
    # metadata can mislead (`pip install .` leaves an egg-info in the checkout, which is on sys.path here).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    code = ("import recbole_llmd4rec, recbole_llmd4rec.config as c; "
            "print(recbole_llmd4rec.__file__); print(c.PROPERTIES_DIR); print(c.DATASET_CONFIG_DIR)")
    completed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    if "No module named 'recbole_llmd4rec'" in completed.stderr:
        pytest.skip("recbole-llmd4rec is not installed: run `pip install .` to test the installed layout")
    assert completed.returncode == 0, completed.stderr[-2000:]
    package, properties, dataset_configs = (os.path.realpath(line) for line in completed.stdout.split())
    if package.startswith(str(REPO) + os.sep):
        pytest.skip("an editable install reads the checkout's folders; this test is for `pip install .`")
    assert not properties.startswith(str(REPO) + os.sep)
    assert os.path.isfile(os.path.join(properties, "overall.yaml"))
    assert os.path.isfile(os.path.join(properties, "model", "S3Rec.yaml"))
    assert os.path.isfile(os.path.join(properties, "main_job.yaml"))
    for name in ("ml-100k", "beauty", "sports", "toys", "yelp", "converted"):
        assert os.path.isfile(os.path.join(dataset_configs, f"{name}.yaml"))
