"""Deploy pipeline: the build job of a pushed deployment.

The job travels through the Queue port (SQLite locally, SQS in AWS). A worker extracts
the archive, builds the Python environment (cached by requirements), and hands the
deployment to the reconciler as DEPLOYING. Any failure marks it FAILED with the reason
in its build log; nothing else changes.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from control_plane.domain import lifecycle
from control_plane.domain.archives import archive_key
from control_plane.domain.build_log import BuildLogWriter
from control_plane.domain.deployments import BUILD_QUEUE
from control_plane.domain.images import context_key, image_request_for
from control_plane.domain.package import (
    requirements_of,
    serves_openai_api,
    validate_config,
    write_pushed_name,
)
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.domain.repository import Repository
from control_plane.exceptions import BuildFailed, NotFound
from control_plane.ports.blob import BlobStore
from control_plane.ports.images import ImageBuilder
from control_plane.ports.metrics import NoMetrics, PlatformMetrics
from control_plane.ports.queue import Message, Queue
from plinth.contracts.exceptions import WeightsError
from plinth.exceptions import PlinthError
from plinth.spec.archive import extract_archive

logger = logging.getLogger(__name__)

# A build may take minutes (pip): while it runs, a heartbeat keeps extending the message's
# visibility so no other worker picks it up; if this worker dies, the heartbeat stops and the
# job reappears within BUILD_VISIBILITY_TIMEOUT_S to be retried.
BUILD_VISIBILITY_TIMEOUT_S = 60.0
BUILD_HEARTBEAT_S = 20.0
_MAX_STATUS_MESSAGE = 2000


class BuiltEnvironmentLike(Protocol):
    @property
    def python(self) -> Path: ...


class EnvironmentBuilderLike(Protocol):
    """The per-requirements environment builder as the pipeline uses it (raises BuildFailed)."""

    def build(
        self, requirements: list[str], *, log: Callable[[str], None], engine: bool = False
    ) -> BuiltEnvironmentLike: ...


@dataclass(frozen=True)
class BuildOutput:
    model_dir: Path
    python: str  # the venv's interpreter; "" when the replicas run the image
    manifests: list[str]
    image: str | None = None  # registry/repo@sha256:... when images are built


@dataclass(frozen=True)
class BuildJob:
    model_id: str
    deployment_id: str

    @classmethod
    def parse(cls, body: str) -> BuildJob:
        data = json.loads(body)
        return cls(model_id=str(data["model_id"]), deployment_id=str(data["deployment_id"]))


class WeightsMirror(Protocol):
    """Mirrors a package's ``weights:`` entries into the blob store; one manifest id each."""

    def __call__(
        self,
        entries: Iterable[Any],
        blobs: BlobStore,
        secret_values: Callable[[list[str]], dict[str, str]],
        log: Callable[[str], None],
    ) -> list[str]: ...


def _no_weights_mirror(
    entries: Iterable[Any],
    blobs: BlobStore,
    secret_values: Callable[[list[str]], dict[str, str]],
    log: Callable[[str], None],
) -> list[str]:
    if list(entries):
        raise WeightsError("this build worker has no weight mirror")
    return []


class BuildWorker:
    def __init__(
        self,
        repo: Repository,
        blobs: BlobStore,
        queue: Queue,
        builder: Callable[[], EnvironmentBuilderLike],
        builds_dir: Path,
        clock: Callable[[], float],
        *,
        secret_values: Callable[[list[str]], dict[str, str]] | None = None,
        mirror_weights: WeightsMirror | None = None,
        metrics: PlatformMetrics | None = None,
        image_builder: Callable[[], ImageBuilder] | None = None,
    ) -> None:
        self._repo = repo
        # Set: every deployment becomes an OCI image (built, pushed, recorded by digest)
        # instead of a venv on this machine.
        self._image_builder = image_builder
        self._metrics = metrics or NoMetrics()
        # Injected (control_plane.weights.build.mirror_for_build): the mirror reads S3, GCS and
        # Hugging Face through adapters, which the domain does not import.
        self._mirror_weights = mirror_weights or _no_weights_mirror
        # Credentials of ``weights:`` sources (auth_secret_name), looked up by name.
        self._secret_values = secret_values or (lambda names: {})
        self._blobs = blobs
        self._queue = queue
        self._builder = builder  # lazy: building it may import heavy things
        self._builds_dir = builds_dir
        self._clock = clock

    def run_once(self) -> bool:
        """Process at most one queued job; True if there was one."""
        messages = self._queue.receive(
            BUILD_QUEUE, max_messages=1, visibility_timeout_s=BUILD_VISIBILITY_TIMEOUT_S
        )
        if not messages:
            return False
        self._handle(messages[0])
        return True

    def run(self, stop: threading.Event, poll_interval_s: float) -> None:
        while not stop.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:
                logger.exception("build worker iteration failed")
            stop.wait(poll_interval_s)

    def _handle(self, message: Message) -> None:
        try:
            job = BuildJob.parse(message.body)
        except (ValueError, KeyError, TypeError):
            logger.error("dropping malformed build job %s", message.id)
            self._queue.ack(BUILD_QUEUE, message.receipt)
            return
        done = threading.Event()
        heartbeat = threading.Thread(
            target=self._keep_hidden, args=(message.receipt, done), daemon=True
        )
        heartbeat.start()
        try:
            self.build(job)
        finally:
            done.set()
            heartbeat.join(timeout=BUILD_HEARTBEAT_S)
        self._queue.ack(BUILD_QUEUE, message.receipt)

    def _keep_hidden(self, receipt: str, done: threading.Event) -> None:
        while not done.wait(BUILD_HEARTBEAT_S):
            try:
                self._queue.change_visibility(BUILD_QUEUE, receipt, BUILD_VISIBILITY_TIMEOUT_S)
            except Exception:
                logger.exception("cannot extend the build job's visibility")

    def build(self, job: BuildJob) -> None:
        try:
            dep = self._repo.get_deployment(job.model_id, job.deployment_id)
        except NotFound:
            return
        if dep.status != DeploymentStatus.BUILDING:
            return  # a redelivered job whose build already finished
        log = BuildLogWriter(self._blobs, dep.id)
        started = self._clock()
        outcome = "failed"
        try:
            output = self._build_steps(dep, log)
        except BuildFailed as exc:
            last_line = exc.output_tail[-1] if exc.output_tail else ""
            self._fail(dep, log, f"{exc} {last_line}".strip())
        except PlinthError as exc:  # any plane's error: adapters, ports, spec, weights
            self._fail(dep, log, str(exc))
        except Exception as exc:
            logger.exception("build of %s failed unexpectedly", dep.id)
            self._fail(dep, log, f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._built(dep, output)
            outcome = "succeeded"
            replicas = dep.autoscaling_settings.replicas_when_up()
            log(f"build finished; deploying {replicas} replica(s)")
        finally:
            log.close()
            self._metrics.build_finished(self._clock() - started, outcome)

    def _build_steps(self, dep: DeploymentRecord, log: Callable[[str], None]) -> BuildOutput:
        work_dir = self._builds_dir / dep.id
        src = work_dir / "src"
        if work_dir.exists():  # a previous attempt died half-way
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
        archive_path = work_dir / "package.tar.gz"
        log(f"fetching archive {dep.archive_sha256}")
        self._blobs.get_file(archive_key(dep.archive_sha256), archive_path)
        extract_archive(archive_path, src)
        archive_path.unlink()
        config = validate_config(dep.config)
        write_pushed_name(src, config.model_name)
        requirements = requirements_of(config, src)
        # Before the environment: a bad weights source fails the deploy in seconds.
        manifests = self._mirror_weights(config.weights, self._blobs, self._secret_values, log)
        if self._image_builder is not None:
            request = image_request_for(dep, config, src, requirements)
            builder = self._image_builder()
            context = builder.prepare_context(request, work_dir)
            self._blobs.put_file(context_key(dep.id), context)
            log(f"building image, {len(requirements)} requirement(s); {context_key(dep.id)}")
            image = builder.build_and_push(context, request, log)
            return BuildOutput(src, "", manifests, image)
        log(f"building Python environment ({len(requirements)} requirement(s))")
        built = self._builder().build(requirements, log=log, engine=config.engine is not None)
        return BuildOutput(src, str(built.python), manifests)

    def _built(self, dep: DeploymentRecord, output: BuildOutput) -> None:
        openai_api = serves_openai_api(validate_config(dep.config), output.model_dir)

        def change(record: DeploymentRecord) -> bool:
            finished = lifecycle.finish_build(
                record,
                self._clock(),
                model_dir=str(output.model_dir),
                python=output.python,
                weights_manifests=output.manifests,
                image=output.image,
            )
            if finished:
                record.openai_api = openai_api
            return finished

        self._repo.update_deployment(dep.model_id, dep.id, change)

    def _fail(self, dep: DeploymentRecord, log: Callable[[str], None], reason: str) -> None:
        log(f"BUILD FAILED: {reason}")

        short = (
            reason if len(reason) <= _MAX_STATUS_MESSAGE else "..." + reason[-_MAX_STATUS_MESSAGE:]
        )

        def change(record: DeploymentRecord) -> bool:
            # False: a redelivered copy of this job already finished the build.
            return lifecycle.fail_build(record, self._clock(), f"build failed: {short}")

        self._repo.update_deployment(dep.model_id, dep.id, change)
