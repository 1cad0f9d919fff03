"""The Ray engine (`TSUZUKI_ENGINE=ray`): generation on the cluster's Ray Serve
deployment (bot/engine/ray_serving.py), training as Ray tasks (ray_training.py).

The bot process keeps what only it knows: which model answers for a channel now (the
database), and the job table. Any number of bot processes may share one cluster: the
first deploys the generation app, later ones with the same settings find it as it is.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from bot import messages as M
from bot.config import Settings
from bot.domain import ChannelRef, GenerationRequest, GenerationResult
from bot.engine.generator import generate_current
from bot.engine.ray_serving import ReplicaConfig, build_application, model_id
from bot.engine.ray_training import train_stream, worker_settings
from bot.engine.resolver import ModelResolver
from bot.errors import BusyError, UserError, WorkerLost
from bot.generation.source import ModelSource
from bot.ports import TextListener
from bot.training.outcome import ProgressFn, TrainOptions, TrainOutcome

log = logging.getLogger(__name__)

# A Ray started by this process (no TSUZUKI_RAY_ADDRESS) keeps its object store small:
# only requests, results and progress pass through it, never model weights.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def connect(settings: Settings) -> bool:
    """Joins the cluster, or starts a Ray in this process when no address is set;
    True when this process started it (and so stops it on close)."""
    import ray

    # Ray's own progress lines (a replica added, Serve started) would land in the
    # console and the bot's log; its workers' logs stay in Ray's session directory on
    # each node (/tmp/ray/session_latest/logs): what fails there reaches the bot as the
    # request's or the job's error anyway.
    logging.getLogger("ray").setLevel(logging.WARNING)
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if settings.ray_address:
        ray.init(address=settings.ray_address, **quiet)
        return False
    ray.init(
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        **quiet,
    )
    return True


class RayEngine:
    def __init__(self, settings: Settings, resolver: ModelResolver, handle: Any, owns: bool):
        import ray

        self.settings = settings
        self.resolver = resolver
        self.handle = handle  # the generation deployment's handle
        self._owns_ray = owns
        self._train = ray.remote(train_stream).options(
            num_returns="streaming",
            num_cpus=settings.ray_train_cpus,
            num_gpus=settings.ray_train_gpus,
            # The job table decides what runs again (and resumes it from its checkpoint),
            # not Ray: a lost task surfaces as WorkerLost.
            max_retries=0,
        )

    @classmethod
    async def start(cls, settings: Settings, resolver: ModelResolver) -> RayEngine:
        """Connects and deploys the generation app (seconds: in a thread, off the loop)."""

        def deploy() -> tuple[Any, bool]:
            from ray import serve
            from ray.serve.schema import ApplicationStatus

            owns = connect(settings)
            # The bot calls its deployment through a handle: no HTTP proxy, no port.
            serve.start(proxy_location="Disabled")
            name = ReplicaConfig.of(settings).app_name(settings)
            running = serve.status().applications.get(name)
            if running is not None and running.status == ApplicationStatus.RUNNING:
                return serve.get_app_handle(name), owns
            handle = serve.run(
                build_application(settings),
                name=name,
                route_prefix=None,
                logging_config={"log_level": "WARNING", "enable_access_log": False},
            )
            return handle, owns

        handle, owns = await asyncio.to_thread(deploy)
        # Serve sets up its logger as it starts: quieten it after.
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        return cls(settings, resolver, handle, owns)

    # --- generation ------------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        return await generate_current(self.resolver, request, on_text, self._serve)

    async def _serve(
        self,
        source: ModelSource,
        request: GenerationRequest,
        seed: int,
        on_text: TextListener | None,
    ) -> GenerationResult:
        from ray.serve.exceptions import BackPressureError

        handle = self.handle.options(stream=True, multiplexed_model_id=model_id(source))
        stream = handle.generate.remote(request, seed, on_text is not None)
        result: GenerationResult | None = None
        try:
            async for kind, value in stream:
                if kind == "text" and on_text is not None:
                    on_text(value)
                elif kind == "result":
                    result = value
        except BackPressureError:
            raise BusyError(M.t("busy")) from None
        except asyncio.CancelledError:
            stream.cancel()  # the replica drops the request from its batch
            raise
        except Exception as e:
            raise _user_error(e) from None
        if result is None:
            raise RuntimeError("the generation stream ended without a result")
        return result

    # --- training --------------------------------------------------------------------

    async def train(
        self, ref: ChannelRef, options: TrainOptions, progress: ProgressFn | None = None
    ) -> TrainOutcome:
        import ray
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        stream = self._train.remote(worker_settings(self.settings), ref, options)
        try:
            async for event_ref in stream:
                event = await event_ref
                if event[0] == "step" and progress is not None:
                    progress(event[1], event[2])
                elif event[0] == "done":
                    outcome: TrainOutcome = event[1]
                    return outcome
        except asyncio.CancelledError:
            # Stopped here (Ctrl-C, shutdown, taken over): so is the task; its run
            # directory keeps the last checkpoint for whoever runs the job next.
            ray.cancel(stream, force=True)
            raise
        except RayTaskError as e:
            raise _user_error(e) from None
        except (RayError, TaskCancelledError) as e:
            # The worker (or its node) died: the job resumes from its checkpoint.
            raise WorkerLost(f"the Ray worker training {ref} was lost: {type(e).__name__}") from e
        raise WorkerLost(f"the Ray worker training {ref} ended without an outcome")

    def close(self) -> None:
        import ray

        if self._owns_ray:
            from ray import serve

            serve.shutdown()
            ray.shutdown()


def _user_error(error: Exception) -> Exception:
    """What failed on the cluster, as the local engine would have raised it: a
    UserError (its reason shown as written) or the error itself (logged, never shown)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, UserError):
        return cause
    return error
