"""deploy/: the Helm values' run launcher validates against dagster-k8s's own config schema; the
code server and the runs get the Ray address and study folder the definitions read."""

import importlib
import json
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


def test_runs_ask_for_a_resource_only_the_ray_workers_offer_and_are_retried_when_a_node_is_lost(
    monkeypatch,
):
    from metapb2_assets.resources import resources_from_env

    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for e in deployment["env"]:
        monkeypatch.setenv(e["name"], e["value"])
    ray_resource, _ = resources_from_env()  # what the code server and every run pod build
    assert ray_resource.max_retries >= 1
    cluster = yaml.safe_load((DEPLOY / "raycluster.yaml").read_text())
    head = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    offered = json.loads(json.loads(workers["rayStartParams"]["resources"]))  # KubeRay's quoted JSON
    assert ray_resource.resources and set(ray_resource.resources) <= set(offered)
    assert "resources" not in head and head["num-cpus"] == "0"  # no run lands on the head
    cpus = int(workers["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    per_pod = min(offered[k] / v for k, v in ray_resource.resources.items())
    assert per_pod * ray_resource.cpus_per_task == cpus  # the custom resource does not idle CPUs


def test_a_deployment_variable_that_does_not_parse_is_one_line_naming_it(monkeypatch):
    import pytest

    from metapb2_assets.resources import SettingError, resources_from_env

    for name, value in [
        ("METAPB2_RAY_TASK_RESOURCES", "metapb2_runs=1"),
        ("METAPB2_RAY_TASK_RESOURCES", '{"metapb2_runs": "one"}'),
        ("METAPB2_RAY_MAX_RETRIES", "-1"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(SettingError, match=f"^{name} = ") as e:
                resources_from_env()
            assert "\n" not in str(e.value)


def _unknown_fields(data: object, model: str, where: str = "") -> list[str]:
    """Where ``data`` departs from the Kubernetes API's model ``model`` (the kubernetes client's
    generated schema): unknown fields, and values of the wrong kind."""
    import kubernetes.client as k8s

    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if model in scalar:
        ok = isinstance(data, scalar[model]) and not (model == "int" and isinstance(data, bool))
        return [] if ok else [f"{where}: {data!r} is not {model}"]
    if model.startswith("list["):
        if not isinstance(data, list):
            return [f"{where}: not a list"]
        return [e for i, x in enumerate(data) for e in _unknown_fields(x, model[5:-1], f"{where}[{i}]")]
    if model.startswith("dict["):
        inner = model[5:-1].split(", ", 1)[1]
        if not isinstance(data, dict):
            return [f"{where}: not a mapping"]
        return [e for k, x in data.items() for e in _unknown_fields(x, inner, f"{where}.{k}")]
    cls = getattr(k8s, model)
    if not isinstance(data, dict):
        return [f"{where}: not a {model} mapping"]
    by_json = {v: k for k, v in cls.attribute_map.items()}
    errors = []
    for key, value in data.items():
        if key not in by_json:
            errors.append(f"{where}.{key}: no such field of {model}")
        else:
            errors += _unknown_fields(value, cls.openapi_types[by_json[key]], f"{where}.{key}")
    return errors


# KubeRay's RayCluster (ray.io/v1) fields this project sets, from the KubeRay API reference; the pod
# templates inside are checked against the Kubernetes API itself.
RAY_START = "dict[str, str]"
RAYCLUSTER_SPEC = {
    "headGroupSpec": {"rayStartParams": RAY_START, "template": "V1PodTemplateSpec", "serviceType": "str"},
    "workerGroupSpecs": [
        {
            "groupName": "str",
            "replicas": "int",
            "minReplicas": "int",
            "maxReplicas": "int",
            "rayStartParams": RAY_START,
            "template": "V1PodTemplateSpec",
        }
    ],
    "rayVersion": "str",
    "enableInTreeAutoscaling": "bool",
}


def _raycluster_errors(doc: dict) -> list[str]:
    errors = (
        []
        if doc.get("apiVersion") == "ray.io/v1" and doc.get("kind") == "RayCluster"
        else ["not a RayCluster"]
    )
    errors += _unknown_fields(doc.get("metadata"), "V1ObjectMeta", "metadata")

    def walk(value: object, schema: object, where: str) -> list[str]:
        if isinstance(schema, str):
            return _unknown_fields(value, schema, where)
        if isinstance(schema, list):
            if not isinstance(value, list) or not value:
                return [f"{where}: not a non-empty list"]
            return [e for i, v in enumerate(value) for e in walk(v, schema[0], f"{where}[{i}]")]
        if not isinstance(value, dict):
            return [f"{where}: not a mapping"]
        out = [f"{where}.{k}: no such field" for k in value if k not in schema]
        return out + [e for k, v in value.items() if k in schema for e in walk(v, schema[k], f"{where}.{k}")]

    errors += walk(doc.get("spec"), RAYCLUSTER_SPEC, "spec")
    for group in doc["spec"].get("workerGroupSpecs", []):
        counts = [group.get(k, 0) for k in ("minReplicas", "replicas", "maxReplicas")]
        if not all(isinstance(c, int) for c in counts) or not counts[0] <= counts[1] <= counts[2]:
            errors.append(f"workerGroupSpecs {group.get('groupName')}: replicas outside [min, max]")
    return errors


def test_the_raycluster_manifest_validates_against_kuberay_and_kubernetes_schemas():
    doc = yaml.safe_load((DEPLOY / "raycluster.yaml").read_text())
    assert _raycluster_errors(doc) == []


def test_a_broken_raycluster_is_rejected_by_the_same_validation():
    doc = yaml.safe_load((DEPLOY / "raycluster.yaml").read_text())
    doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    doc["spec"]["workerGroupSpecs"][0]["replicas"] = "4"
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] = "x"
    errors = _raycluster_errors(doc)
    assert len(errors) == 4, errors  # the typo, the string count, its range check, the volume


def test_the_study_volume_claim_is_the_one_every_pod_mounts():
    claims = list(yaml.safe_load_all((DEPLOY / "pvc.yaml").read_text()))
    for claim in claims:
        assert _unknown_fields(claim, "V1PersistentVolumeClaim") == []
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    names = {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in claims}
    ray = yaml.safe_load((DEPLOY / "raycluster.yaml").read_text())
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    pods = [ray["spec"]["headGroupSpec"]["template"]] + [
        g["template"] for g in ray["spec"]["workerGroupSpecs"]
    ]
    used = {
        (ray["metadata"]["namespace"], v["persistentVolumeClaim"]["claimName"])
        for p in pods
        for v in p["spec"]["volumes"]
    }
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]["volumes"]
    used |= {("dagster", v["persistentVolumeClaim"]["claimName"]) for v in launcher}
    assert used <= names, used - names


def _image_of(values: dict) -> str:
    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    return f"{image['repository']}:{image['tag']}"


def test_the_dockerfile_builds_the_image_the_manifests_name():
    """Lint (where no container runtime can build it): the tag the manifests name is the one the
    Dockerfile's build line makes, every path it copies exists, and it installs against the pins."""
    text = (DEPLOY / "Dockerfile").read_text()
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    ray = yaml.safe_load((DEPLOY / "raycluster.yaml").read_text())
    image = _image_of(values)
    images = {
        c["image"]
        for p in [ray["spec"]["headGroupSpec"]] + ray["spec"]["workerGroupSpecs"]
        for c in p["template"]["spec"]["containers"]
    }
    assert images == {image}
    assert f"-t {image} ." in text
    root = DEPLOY.parent
    steps = [
        line.split(None, 1)
        for line in text.replace("\\\n", " ").splitlines()
        if line and not line.startswith("#")
    ]
    known = {"FROM", "RUN", "WORKDIR", "COPY", "ENV", "CMD"}
    assert {s[0] for s in steps} <= known, {s[0] for s in steps} - known
    assert steps[0][0] == "FROM" and "python:3.11" in steps[0][1]
    for op, args in steps:
        if op == "COPY":
            for src in args.split()[:-1]:
                assert (root / src).exists(), src
        if op == "RUN" and "pip install" in args:
            assert "-c constraints.txt" in args
    version = dict(
        line.split("==") for line in (root / "constraints.txt").read_text().split() if "==" in line
    )
    assert ray["spec"].get("rayVersion", version["ray"]) == version["ray"]


def test_the_paper_scale_study_is_the_committed_study_at_the_paper_budget_and_ten_seeds():
    """`metapb2-study --study deploy/classic-paper.yaml` runs the grid of results/classic-short at
    protocol.md's scale: the same tasks, methods, mode and candidate sizes, 10 seeds, `paper`."""
    from metapb2_core.budgets import get_budget
    from metapb2_core.study_spec import load_study

    paper = load_study(DEPLOY / "classic-paper.yaml")
    short = load_study(DEPLOY.parent / "results" / "classic-short" / "study.yaml")
    assert paper == short.with_changes(name="classic-paper", budget="paper", seeds=list(range(10)))
    budget = get_budget("paper", paper.family)
    assert (budget.population_size, budget.total_steps, budget.interval) == (4, 600_000, 40_000)
    assert "COPY deploy/classic-paper.yaml ./deploy/" in (DEPLOY / "Dockerfile").read_text()


def test_the_study_job_validates_and_runs_the_paper_study_against_the_releases_instance():
    """deploy/study-job.yaml: a valid batch/v1 Job whose pod runs the paper declaration the image
    carries, with the chart's instance (ConfigMap, PostgreSQL password), the Ray cluster and the
    study volume the rest of deploy/ names."""
    job = yaml.safe_load((DEPLOY / "study-job.yaml").read_text())
    assert _unknown_fields(job, "V1Job") == []
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert container["image"] == _image_of(values)
    cmd = container["command"]
    assert (
        cmd[0] == "metapb2-study"
        and cmd[cmd.index("--study") + 1] == "/opt/metapb2/deploy/classic-paper.yaml"
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for e in deployment["env"]:
        assert env[e["name"]] == e["value"], e["name"]
    password = next(e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == CHART_FILLED["postgres_password_secret"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts[env["DAGSTER_HOME"]]["configMap"]["name"] == CHART_FILLED["instance_config_map"]
    claims = {
        (c["metadata"]["namespace"], c["metadata"]["name"])
        for c in yaml.safe_load_all((DEPLOY / "pvc.yaml").read_text())
    }
    study_claim = mounts[env["METAPB2_STUDY_ROOT"]]["persistentVolumeClaim"]["claimName"]
    assert (job["metadata"]["namespace"], study_claim) in claims
    assert pod["serviceAccountName"] == CHART_FILLED["service_account_name"]


def test_the_image_has_the_storage_of_the_charts_instance():
    """The chart's instance keeps runs in PostgreSQL: the image installs dagster-postgres, pinned to
    the release that pairs with the pinned dagster."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    install = next(line for line in text.splitlines() if "pip install" in line)
    assert "dagster-postgres" in install and "import" in install and "dagster_postgres" in install
    pins = dict(
        line.split("==") for line in (DEPLOY.parent / "constraints.txt").read_text().split() if "==" in line
    )
    assert pins["dagster-postgres"] == pins["dagster-k8s"]
