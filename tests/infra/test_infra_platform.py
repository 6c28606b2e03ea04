"""ClusterPlatform under Pulumi mocks: everything through the explicit provider."""

from __future__ import annotations

import pulumi_kubernetes as k8s
import pytest

from infra.exceptions import InfraConfigError
from infra.platform import DEVICE_PLUGIN_VERSION, ClusterPlatform, ClusterPlatformArgs

IMAGES = {
    "gateway_image": "ghcr.io/plinth-dev/gateway:0.1.0",
    "node_agent_image": "ghcr.io/plinth-dev/node-agent:0.1.0",
}


def _program(tags, **overrides):
    def program():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        args = ClusterPlatformArgs(
            provider=provider,
            tags=tags,
            control_plane_url="https://cp.example",
            **{**IMAGES, **overrides},
        )
        return {"ns": ClusterPlatform("plinth", args).namespace}

    return program


def test_every_kubernetes_resource_uses_the_explicit_provider(run, tags) -> None:
    result = run(_program(tags))
    k8s_resources = [r for r in result.resources if r.type.startswith("kubernetes:")]
    assert len(k8s_resources) >= 12
    assert all(r.provider and "::k8s::" in r.provider for r in k8s_resources)


def test_namespace_rbac_and_gateway(run, tags) -> None:
    result = run(_program(tags))
    assert (
        result.one("kubernetes:core/v1:Namespace", "plinth-ns").inputs["metadata"]["name"]
        == "plinth"
    )
    role = result.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "plinth-gateway").inputs
    assert role["rules"][0]["verbs"] == ["get", "list", "watch"]  # read-only
    binding = result.one(
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "plinth-gateway"
    ).inputs
    assert binding["subjects"][0]["name"] == "plinth-gateway"
    deployment = result.one("kubernetes:apps/v1:Deployment", "plinth-gateway").inputs
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "plinth-gateway"
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "gpu_nodes.gateway"]
    assert container["args"][:2] == ["--control-plane-url", "$(PLINTH_CONTROL_PLANE_URL)"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PLINTH_CONTROL_PLANE_URL"]["value"] == "https://cp.example"
    token_ref = env["PLINTH_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token_ref["name"] == "plinth-internal-token"
    assert "value" not in env["PLINTH_INTERNAL_TOKEN"]
    service = result.one("kubernetes:core/v1:Service", "plinth-gateway").inputs
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_weights_cache_tolerates_gpu_taint_and_uses_host_cache(run, tags) -> None:
    result = run(_program(tags, cache_host_path="/mnt/nvme/plinth"))
    pod = result.one("kubernetes:apps/v1:DaemonSet", "plinth-weights-cache").inputs["spec"][
        "template"
    ]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (volume,) = pod["volumes"]
    assert volume["hostPath"] == {"path": "/mnt/nvme/plinth", "type": "DirectoryOrCreate"}
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert container["args"][:2] == ["--dir", "/cache"]
    assert container["ports"][0]["hostPort"] == container["ports"][0]["containerPort"]
    # The in-cluster origin replicas fall back to: a Service over every node's cache.
    service = result.one("kubernetes:core/v1:Service", "plinth-weights-cache").inputs["spec"]
    template = result.one("kubernetes:apps/v1:DaemonSet", "plinth-weights-cache").inputs["spec"]
    assert service["selector"] == template["selector"]["matchLabels"]
    assert service["ports"] == [{"name": "cache", "port": 8791, "targetPort": "cache"}]


def test_device_plugin_release_is_pinned_and_priority_classes_exist(run, tags) -> None:
    result = run(_program(tags))
    (release,) = result.of_type("kubernetes:helm.sh/v3:Release")
    assert release.inputs["chart"] == "nvidia-device-plugin"
    assert release.inputs["version"] == DEVICE_PLUGIN_VERSION
    assert release.inputs["repositoryOpts"]["repo"] == "https://nvidia.github.io/k8s-device-plugin"
    classes = {
        p.inputs["metadata"]["name"]: p.inputs["value"]
        for p in result.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    }
    assert classes["plinth-system"] > classes["plinth-production"] > classes["plinth-development"]
    without = run(_program(tags, install_device_plugin=False))
    assert without.of_type("kubernetes:helm.sh/v3:Release") == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gateway_image": "ghcr.io/plinth-dev/gateway"}, "gateway_image"),
        ({"cache_host_path": "relative/path"}, "cache_host_path"),
        ({"gateway_replicas": 0}, "gateway_replicas"),
    ],
)
def test_bad_platform_args(run, tags, overrides, field) -> None:
    def program():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        ClusterPlatformArgs(
            provider=provider, tags=tags, control_plane_url="u", **{**IMAGES, **overrides}
        )

    with pytest.raises(InfraConfigError) as excinfo:
        run(program)
    assert excinfo.value.field == field


def test_every_platform_pod_has_a_priority_class_and_the_gateway_a_pdb(run, tags) -> None:
    result = run(_program(tags))
    for kind in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:DaemonSet"):
        for workload in result.of_type(kind):
            pod = workload.inputs["spec"]["template"]["spec"]
            assert pod["priorityClassName"] == "plinth-system", workload.name
    (pdb,) = result.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    gateway = result.one("kubernetes:apps/v1:Deployment", "plinth-gateway").inputs
    assert pdb.inputs["spec"]["selector"] == gateway["spec"]["selector"]
    assert pdb.inputs["spec"]["maxUnavailable"] == 1
