"""Pod settings for ``@task.kubernetes`` steps: hardened by default, secrets only from a Secret."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from kubernetes.client import models as k8s

from genai_pipeline.config import Settings

log = logging.getLogger(__name__)

# The decorator writes its script to /tmp: with a read-only root filesystem that must be a volume.
TMP_VOLUME = "tmp"
SHARED_VOLUME = "shared"


def pod_options(settings: Settings, step: str, image: str) -> dict[str, Any]:
    """Everything ``task.kubernetes`` needs to run ``step`` from ``image`` in the pipeline namespace."""
    runtime = settings.runtime
    resources = runtime.resources.get(step) or runtime.resources.get(image) or runtime.resources["chunk"]
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
    restricted = k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )
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
        "container_security_context": restricted,
        # The provider's XCom sidecar gets none of its own: without this the restricted namespace refuses the pod.
        "xcom_sidecar_container_security_context": restricted,
        "volumes": volumes,
        "volume_mounts": mounts,
        "active_deadline_seconds": runtime.active_deadline_seconds,
        "do_xcom_push": True,
        "startup_check_interval_seconds": 1,
        "on_finish_action": "delete_succeeded_pod",
        "get_logs": True,
    }


# Requests and limits of the XCom sidecar (it only sleeps, then serves one `cat`).
SIDECAR_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}}


def kubernetes_connection(settings: Settings) -> dict[str, Any]:
    """The ``kubernetes_default`` connection Airflow launches step pods with (``AIRFLOW_CONN_KUBERNETES_DEFAULT``).

    The sidecar image and resources can only be set here (connection extras), not per task.
    """
    runtime = settings.runtime
    # The provider json.loads() the resources field: it is a JSON string inside the extras.
    extra: dict[str, Any] = {
        "namespace": runtime.namespace,
        "xcom_sidecar_container_resources": json.dumps(SIDECAR_RESOURCES),
    }
    if runtime.in_cluster:
        extra["in_cluster"] = True
    elif runtime.kube_config_path:
        extra["kube_config_path"] = runtime.kube_config_path
    if runtime.xcom_sidecar_image:
        extra["xcom_sidecar_container_image"] = runtime.xcom_sidecar_image
    return {"conn_type": "kubernetes", "extra": json.dumps(extra)}


# Signs, in a failed pod task's exception (the provider appends the last pod state it read), that the step
# never ran to its end for reasons outside its code. A step that raised leaves its container terminated with
# its own exit code and none of these.
_INFRASTRUCTURE_SIGNS: tuple[tuple[str, str], ...] = (
    (r"'deletion_timestamp': datetime", "the pod was deleted while the step ran"),
    (r"\bEvicted\b", "the node evicted the pod"),
    (r"OOMKilled", "the container exceeded its memory limit (OOMKilled)"),
    (r"DeadlineExceeded", "the pod ran past active_deadline_seconds"),
    (r"ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull", "the image could not be pulled"),
    (r"took too long to start|PodLaunchTimeout|Unschedulable", "the pod never started"),
    (r"PodNotFound|Pod \S+ not found|\(404\)", "the pod disappeared (deleted or evicted) before the step finished"),
    (r"'exit_code': (137|143)\b", "the step container was killed from outside (SIGKILL/SIGTERM)"),
)


def classify_pod_failure(error: BaseException | str | None) -> tuple[str, str]:
    """``("infrastructure", why)`` when the pod, not the step, failed; else ``("step", why)``.

    Retries fix the first kind; the second needs the step's traceback (in the same task log) read.
    """
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "")
    for pattern, why in _INFRASTRUCTURE_SIGNS:
        if re.search(pattern, text):
            return "infrastructure", why
    if "returned a failure" in text and "'exit_code': " not in text:
        # The last state the provider saw has no exit code: the pod went away before its step container ended.
        return "infrastructure", "the pod went away before the step container finished (deleted or evicted)"
    first = text.splitlines()[0] if text else "unknown error"
    return "step", f"the step's code failed ({first}); its traceback is in the pod log above"


def explain_pod_failure(context: Any) -> None:
    """Task callback: say in the task log whether the pod or the step failed."""
    kind, why = classify_pod_failure(context.get("exception"))
    ti = context.get("ti")
    where = f"{ti.task_id}[{ti.map_index}] try {ti.try_number}" if ti is not None else "task"
    log.error("%s failure in %s: %s", kind.upper(), where, why)
