"""Rendered Kubernetes manifests: schema-valid (kubernetes-validate, strict) and carrying
the GPU placement, probes, secrets-as-files and labels the platform relies on."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.image_context import IMAGE_PYTHON
from control_plane.adapters.k8s_manifests import (
    KubernetesOptions,
    label_value,
    object_name,
    parse_accelerator,
    render_manifests,
)
from control_plane.domain.package import replica_spec_for
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.ports.cluster import CustomServer, ReplicaSpec
from plinth.spec.loader import load_config

K8S_VERSION = "1.30.0"

GPU_SPEC = ReplicaSpec(
    deployment_id="dep_GPU_01",
    model_id="model-llm",
    model_dir="/srv/model",
    python="python",
    env={"PLINTH_IMAGE": "registry.local/llm:1", "HF_HUB_OFFLINE": "1"},
    secrets={"hf_access_token": "hf_s3cr3t"},
    cpu="8",
    memory="64Gi",
    accelerator="H100:2",
    predict_concurrency=32,
)
CPU_SPEC = ReplicaSpec(deployment_id="dep1", model_id="m1", model_dir="/srv/model", python="python")


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


@pytest.mark.parametrize("spec", [GPU_SPEC, CPU_SPEC], ids=["gpu", "cpu"])
def test_manifests_are_schema_valid(spec: ReplicaSpec) -> None:
    for manifest in render_manifests(spec, 3, KubernetesOptions(namespace="models")):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_invalid_manifest_is_caught_by_the_validator() -> None:
    # Guard: the validator really rejects a broken Deployment, so the test above means something.
    [deployment, _service, _pdb] = render_manifests(CPU_SPEC, 1)
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_gpu_spec_requests_gpus_on_gpu_nodes() -> None:
    kinds = _by_kind(render_manifests(GPU_SPEC, 2, KubernetesOptions(namespace="models")))
    assert set(kinds) == {"Secret", "Deployment", "Service", "PodDisruptionBudget"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"] == {
        "cpu": "8",
        "memory": "64Gi",
        "nvidia.com/gpu": "2",
    }
    assert pod["nodeSelector"] == {"plinth.dev/gpu": "H100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert container["image"] == "registry.local/llm:1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"HF_HUB_OFFLINE": "1", "PLINTH_SECRETS_DIR": "/var/run/plinth/secrets"}


def test_secrets_are_files_from_a_secret_and_never_in_env() -> None:
    kinds = _by_kind(render_manifests(GPU_SPEC, 1))
    secret = kinds["Secret"]
    assert base64.b64decode(secret["data"]["hf_access_token"]) == b"hf_s3cr3t"
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o400
    [container] = pod["containers"]
    assert {
        "name": "secrets",
        "mountPath": "/var/run/plinth/secrets",
        "readOnly": True,
    } in container["volumeMounts"]
    assert "hf_s3cr3t" not in str(kinds["Deployment"]) and "hf_s3cr3t" not in str(kinds["Service"])
    assert pod["automountServiceAccountToken"] is False


def test_probes_command_and_service() -> None:
    kinds = _by_kind(
        render_manifests(CPU_SPEC, 4, KubernetesOptions(namespace="ns", image="img:1"))
    )
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 4
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models/model", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    # The image's own model server on the image's own package: no control-plane path.
    assert container["command"] == ["/opt/plinth/venv/bin/python", "-m", "gpu_nodes.model_server"]
    assert container["args"] == [
        "--model-dir", "/opt/plinth/model", "--port", "8080", "--host", "0.0.0.0",
    ]  # fmt: skip
    assert container["image"] == "img:1"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "nodeSelector" not in deployment["spec"]["template"]["spec"]
    assert "Secret" not in kinds
    service = kinds["Service"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector["plinth.dev/deployment-id"] == "dep1"
    assert all(m["metadata"]["namespace"] == "ns" for m in kinds.values())


def test_scale_to_zero_keeps_objects_with_zero_replicas() -> None:
    kinds = _by_kind(render_manifests(CPU_SPEC, 0))
    assert kinds["Deployment"]["spec"]["replicas"] == 0


def test_names_and_labels_are_valid_and_distinct() -> None:
    assert object_name("dep1") == "plinth-dep1"
    long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
    assert len(object_name(long_a)) <= 63 and object_name(long_a) != object_name(long_b)
    assert object_name("Dep_1") != object_name("dep-1")
    assert label_value("dep_1") == "dep_1"
    assert label_value("a/b") != label_value("a:b") and len(label_value("y" * 100)) <= 63


@pytest.mark.parametrize(
    ("raw", "kind", "count"),
    [
        ("A10G", "A10G", 1),
        ("h100:8", "H100", 8),
        ("a100-80gb:2", "A100", 2),
        ("A100_40GB", "A100_40GB", 1),
    ],
)
def test_accelerator_parsing(raw: str, kind: str, count: int) -> None:
    parsed = parse_accelerator(raw)
    assert (parsed.kind, parsed.count) == (kind, count)


@pytest.mark.parametrize(
    "raw", ["", "H100:", "H100:0", "H100:x", ":2", "H100_40GB", "H100:16", "TPU:1"]
)
def test_bad_accelerators_are_named(raw: str) -> None:
    with pytest.raises(ClusterError, match="accelerator"):
        parse_accelerator(raw)


def test_bad_secret_name_is_refused() -> None:
    spec = ReplicaSpec("d", "m", "/srv", "python", secrets={"bad name": "v"})
    with pytest.raises(ClusterError, match="'bad name'"):
        render_manifests(spec, 1)


@pytest.mark.parametrize(
    ("env", "priority"),
    [
        ({"PLINTH_ENVIRONMENT": "production"}, "plinth-production"),
        ({"PLINTH_ENVIRONMENT": "staging"}, "plinth-development"),
        ({}, "plinth-development"),
    ],
)
def test_every_pod_has_a_priority_class_by_environment(env, priority) -> None:
    spec = ReplicaSpec("dep1", "m1", "/srv/model", "python", env=env)
    for accelerator in (None, "L4"):
        gpu_spec = dataclasses.replace(spec, accelerator=accelerator)
        kinds = _by_kind(render_manifests(gpu_spec, 1))
        assert kinds["Deployment"]["spec"]["template"]["spec"]["priorityClassName"] == priority


def test_priority_classes_are_the_ones_the_platform_creates() -> None:
    from infra.platform import PRIORITY_CLASSES

    options = KubernetesOptions()
    assert options.production_priority_class in PRIORITY_CLASSES
    assert options.development_priority_class in PRIORITY_CLASSES
    assert (
        PRIORITY_CLASSES[options.production_priority_class]
        > PRIORITY_CLASSES[options.development_priority_class]
    )


def test_disruption_budget_covers_exactly_the_deployments_pods() -> None:
    kinds = _by_kind(render_manifests(GPU_SPEC, 3, KubernetesOptions(namespace="models")))
    pdb, deployment = kinds["PodDisruptionBudget"], kinds["Deployment"]
    kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)
    assert pdb["metadata"]["name"] == deployment["metadata"]["name"]
    assert pdb["metadata"]["namespace"] == "models"
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    other = _by_kind(render_manifests(CPU_SPEC, 1))["PodDisruptionBudget"]
    assert other["spec"]["selector"] != pdb["spec"]["selector"]


def test_invalid_priority_or_budget_is_caught_by_the_validator() -> None:
    kinds = _by_kind(render_manifests(CPU_SPEC, 1))
    kinds["PodDisruptionBudget"]["spec"]["unhealthyPodEvictionPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(kinds["PodDisruptionBudget"], K8S_VERSION, strict=True)
    kinds["Deployment"]["spec"]["template"]["spec"]["priorityClassName"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(kinds["Deployment"], K8S_VERSION, strict=True)


def test_replicas_with_weights_use_the_node_agent_on_their_node() -> None:
    env = {"PLINTH_WEIGHTS_MANIFESTS": "m1", "PLINTH_WEIGHTS_ORIGIN_URL": "http://cp/weights"}
    spec = dataclasses.replace(GPU_SPEC, env=env)
    deployment = _by_kind(render_manifests(spec, 1))["Deployment"]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    node_ip = container["env"][names.index("PLINTH_NODE_IP")]
    assert node_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    cluster_url = container["env"][names.index("PLINTH_WEIGHTS_CLUSTER_URL")]
    # Defined after PLINTH_NODE_IP, so the kubelet expands the reference.
    assert names.index("PLINTH_NODE_IP") < names.index("PLINTH_WEIGHTS_CLUSTER_URL")
    assert cluster_url["value"] == "http://$(PLINTH_NODE_IP):8791"


def test_replicas_with_weights_share_the_node_cache_on_the_agents_host_path() -> None:
    from infra.platform import ClusterPlatformArgs

    env = {
        "PLINTH_WEIGHTS_MANIFESTS": "m1",
        "PLINTH_WEIGHTS_ORIGIN_URL": "http://weights-cache/",
        "PLINTH_WEIGHTS_CACHE_DIR": "/tmp/plinth/weights-cache",  # the control plane's own
    }
    deployment = _by_kind(render_manifests(dataclasses.replace(GPU_SPEC, env=env), 1))["Deployment"]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "node-cache"]
    agent_root = ClusterPlatformArgs.__dataclass_fields__["cache_host_path"].default
    assert volume["hostPath"]["path"].startswith(f"{agent_root}/")
    assert volume["hostPath"]["type"] == "DirectoryOrCreate"
    [container] = pod["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "node-cache"]
    cache_dirs = [e["value"] for e in container["env"] if e["name"] == "PLINTH_WEIGHTS_CACHE_DIR"]
    assert cache_dirs == [mount["mountPath"]]
    # Without weights, or with the node cache turned off, nothing of the node is mounted.
    for spec, opts in (
        (GPU_SPEC, KubernetesOptions()),
        (dataclasses.replace(GPU_SPEC, env=env), KubernetesOptions(node_cache_host_path=None)),
    ):
        rendered = _by_kind(render_manifests(spec, 1, opts))["Deployment"]
        volumes = rendered["spec"]["template"]["spec"].get("volumes", [])
        assert "node-cache" not in [v["name"] for v in volumes]


def test_weights_cache_port_matches_the_platform() -> None:
    from infra.platform import WEIGHTS_CACHE_PORT

    assert KubernetesOptions().weights_cache_port == WEIGHTS_CACHE_PORT


@pytest.mark.parametrize(
    "env",
    [
        {},  # no weights: nothing to fetch
        {"PLINTH_WEIGHTS_MANIFESTS": "m1", "PLINTH_WEIGHTS_CLUSTER_URL": "http://cache:1"},
    ],
)
def test_no_node_cache_url_without_weights_or_with_an_explicit_one(env) -> None:
    spec = dataclasses.replace(CPU_SPEC, env=env)
    [container] = _by_kind(render_manifests(spec, 1))["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ]
    names = [e["name"] for e in container["env"]]
    assert "PLINTH_NODE_IP" not in names
    assert names.count("PLINTH_WEIGHTS_CLUSTER_URL") == len(
        [k for k in env if k == "PLINTH_WEIGHTS_CLUSTER_URL"]
    )


def test_replica_pods_announce_their_metrics_endpoint() -> None:
    opts = KubernetesOptions(namespace="models", container_port=9000)
    deployment = _by_kind(render_manifests(CPU_SPEC, 1, opts))["Deployment"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_removed_pods_drain_through_a_bounded_pre_stop_hook() -> None:
    options = KubernetesOptions(namespace="ns", drain_settle_s=4, drain_timeout_s=45)
    deployment = _by_kind(render_manifests(CPU_SPEC, 2, options))["Deployment"]
    pod_spec = deployment["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [
        IMAGE_PYTHON, "-m", "gpu_nodes.model_server.drain", "--port", "8080",
        "--settle", "4", "--timeout", "45",
    ]  # fmt: skip
    # The hook's time and the server's own shutdown both fit in the grace period.
    assert pod_spec["terminationGracePeriodSeconds"] == 4 + 45 + options.termination_grace_s
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_custom_server_runs_its_command_on_its_port_with_its_probes() -> None:
    server = CustomServer(
        start_command="vllm serve /models/x --port 8000",
        server_port=8000,
        readiness_path="/health/ready",
        liveness_path="/health/live",
    )
    spec = ReplicaSpec(
        deployment_id="dep-c", model_id="m1", model_dir="/srv/model", python="python",
        custom_server=server,
    )  # fmt: skip
    manifests = render_manifests(spec, 2)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    deployment = _by_kind(manifests)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c", "vllm serve /models/x --port 8000"]
    assert "args" not in container
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert {"name": "PORT", "value": "8000"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations  # it serves no Plinth /metrics
    assert "lifecycle" not in container  # no Plinth drain hook in the user's image


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "config.yaml").is_file())
)
def test_every_example_runs_its_image_by_digest_with_no_host_path(example: str) -> None:
    config = load_config(EXAMPLES / example).to_dict()
    record = DeploymentRecord(
        id="depimg01",
        model_id="modimg01",
        name="d",
        status=DeploymentStatus.DEPLOYING,
        created_at=0.0,
        status_changed_at=0.0,
        archive_sha256="0" * 64,
        config=config,
        model_dir="/var/lib/plinth/builds/depimg01/src",  # where the builder extracted it
        image=f"registry.example:5000/plinth/models/modimg01@{DIGEST}",
    )
    spec = replica_spec_for(record, lambda names: {n: "v" for n in names})
    manifests = render_manifests(spec, 1, KubernetesOptions(namespace="models"))
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    deployment = _by_kind(manifests)["Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.example:5000/plinth/models/modimg01@{DIGEST}"
    rendered = json.dumps(manifests)
    assert "/var/lib/plinth" not in rendered and "hostPath" not in rendered


def test_a_custom_server_with_an_image_keeps_its_command() -> None:
    server = CustomServer("serve --port 8000", 8000, "/ready", "/live")
    image = f"registry.example:5000/plinth/models/m1@{DIGEST}"
    spec = ReplicaSpec("dep-ci", "m1", "", "", image=image, custom_server=server)
    [container] = _by_kind(render_manifests(spec, 1))["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == image
    assert container["command"] == ["/bin/sh", "-c", "serve --port 8000"]
    assert "args" not in container and "lifecycle" not in container
