"""Pod settings for ``@task.kubernetes`` steps: hardened by default, secrets only from a Secret."""

from __future__ import annotations

from typing import Any

from kubernetes.client import models as k8s

from genai_pipeline.config import Settings

# The decorator writes its script to /tmp: with a read-only root filesystem that must be a volume.
TMP_VOLUME = "tmp"
SHARED_VOLUME = "shared"


def pod_options(settings: Settings, step: str, image: str) -> dict[str, Any]:
    """Everything ``task.kubernetes`` needs to run ``step`` from ``image`` in the pipeline namespace."""
    runtime = settings.runtime
    resources = runtime.resources.get(step) or runtime.resources["chunk"]
    uid = runtime.run_as_user
    volumes = [k8s.V1Volume(name=TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi"))]
    mounts = [k8s.V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp")]
    if runtime.shared_volume_claim:
        volumes.append(
            k8s.V1Volume(
                name=SHARED_VOLUME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=runtime.shared_volume_claim),
            )
        )
        mounts.append(k8s.V1VolumeMount(name=SHARED_VOLUME, mount_path=runtime.shared_mount_path))
    return {
        "image": runtime.image_for(image),
        "namespace": runtime.namespace,
        "name": f"genai-{step.replace('_', '-')}",
        "labels": {"app.kubernetes.io/part-of": "genai-pipeline", "genai-pipeline/step": step},
        "image_pull_policy": runtime.image_pull_policy,
        "service_account_name": runtime.service_account,
        "automount_service_account_token": False,
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": resources.cpu_request, "memory": resources.memory_request},
            limits={"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        ),
        # Non-secret settings travel as env; API keys come from the Secret (optional: local servers need none).
        "env_vars": settings.public_env(),
        "env_from": [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=runtime.secret_name, optional=True))],
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=uid,
            run_as_group=uid,
            fs_group=uid,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        "volumes": volumes,
        "volume_mounts": mounts,
        "active_deadline_seconds": runtime.active_deadline_seconds,
        "do_xcom_push": True,
        "startup_check_interval_seconds": 1,
        "on_finish_action": "delete_succeeded_pod",
        "get_logs": True,
    }
