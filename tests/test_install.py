"""A non-editable install finds its yaml files from any working directory."""

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def _installed_distribution():
    try:
        return importlib.metadata.distribution("recbole-llmd4rec")
    except importlib.metadata.PackageNotFoundError:
        return None


def test_installed_package_carries_properties_and_dataset_configs(tmp_path):
    dist = _installed_distribution()
    if dist is None:
        pytest.skip("recbole-llmd4rec is not installed: run `pip install .` to test the installed layout")
    direct_url = dist.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        pytest.skip("an editable install reads the checkout's folders; this test is for `pip install .`")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    code = "import recbole_llmd4rec.config as c; print(c.PROPERTIES_DIR); print(c.DATASET_CONFIG_DIR)"
    completed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300, check=True)
    properties, dataset_configs = (os.path.realpath(line) for line in completed.stdout.split())
    assert not properties.startswith(str(REPO) + os.sep)
    assert os.path.isfile(os.path.join(properties, "overall.yaml"))
    assert os.path.isfile(os.path.join(properties, "model", "S3Rec.yaml"))
    assert os.path.isfile(os.path.join(properties, "main_job.yaml"))
    for name in ("ml-100k", "beauty", "sports", "toys", "yelp", "converted"):
        assert os.path.isfile(os.path.join(dataset_configs, f"{name}.yaml"))
