"""deploy/: the Helm values' run launcher validates against dagster-k8s's own config schema; the
code server and the runs get the Ray address and study folder the definitions read."""

import importlib
import re
from pathlib import Path

import yaml
from dagster._config import process_config
from dagster_k8s import K8sRunLauncher

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


# What the chart's instance template adds to the user's block for a release named "metapb2".
CHART_FILLED = {
    "instance_config_map": "metapb2-dagster-instance",
    "service_account_name": "metapb2-dagster",
    "dagster_home": "/opt/dagster/dagster_home",
    "postgres_password_secret": "metapb2-postgresql-secret",
}


def _launcher_config(values: dict) -> dict:
    """The chart's camelCase k8sRunLauncher block in the instance's snake_case form."""
    block = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {**CHART_FILLED, **{_snake(k): v for k, v in block.items()}}


def test_run_launcher_config_validates_against_dagster_k8s_schema():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    result = process_config(K8sRunLauncher.config_type(), _launcher_config(values))
    assert result.success, [e.message for e in result.errors]
    assert result.value["load_incluster_config"] is True


def test_a_broken_launcher_config_is_rejected_by_the_same_schema():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    config = _launcher_config(values)
    config["image_pull_policy"] = 3  # not a string
    config["no_such_field"] = True
    result = process_config(K8sRunLauncher.config_type(), config)
    assert not result.success and len(result.errors) == 2


def test_code_server_and_runs_point_at_the_ray_cluster_and_the_study_volume():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = importlib.import_module(args[args.index("--module-name") + 1])
    assert hasattr(module, args[args.index("--attribute") + 1])
    env = {e["name"]: e["value"] for e in deployment["env"]}
    run_env = dict(v.split("=", 1) for v in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"])
    assert env == run_env
    ray = yaml.safe_load((DEPLOY / "raycluster.yaml").read_text())
    head = f"ray://{ray['metadata']['name']}-head-svc.{ray['metadata']['namespace']}.svc.cluster.local:10001"
    assert env["METAPB2_RAY_ADDRESS"] == head
    mounts = values["runLauncher"]["config"]["k8sRunLauncher"]["volumeMounts"]
    assert {m["mountPath"] for m in mounts} == {env["METAPB2_STUDY_ROOT"]}
