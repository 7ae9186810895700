"""A backend that answers with a model's recorded outputs: no network, no model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

from moa_search.config import ModelSpec
from moa_search.config.recorded import ModelOutput, load_model_outputs
from moa_search.errors import ConfigError, ModelCallError
from moa_search.runtime.backends.base import Backend, Completion, estimate_tokens
from moa_search.runtime.prompting import ChatRequest

__all__ = ["ReplayBackend"]


class ReplayBackend(Backend):
    """A pool model that answers with its recorded output for the request's instruction.

    The instruction is the content of the request's last user message. No network: an
    unrecorded instruction raises :class:`ModelCallError` of kind ``"not_found"`` (not
    retried). Token counts are estimated from the texts (``usage_estimated``), so costs follow
    the pool's prices. Sampling parameters and the sample index are ignored: every sample is
    the same recorded answer.

    A replay is faithful only where the recording was made: a model answering the instruction
    alone, i.e. a layer-0 proposer (or the aggregator of a mixture with no proposer layers).
    A later-layer proposer or an aggregator sees other answers in a system message that the
    recording never saw; by default it still answers with its recording, which is right when
    the recording is itself a mixture's final answer (e.g. AlpacaEval's ``Together-MoA`` as
    the aggregator) and wrong otherwise — such roles need a recording made with those
    references, or a real model. With ``plain_prompt_only`` such requests raise ``not_found``.
    An empty recorded output is an ``empty_response`` failure like any empty answer, made once:
    the backend is :attr:`~moa_search.runtime.backends.base.Backend.deterministic`.
    """

    deterministic = True

    def __init__(
        self,
        spec: ModelSpec,
        outputs: Iterable[ModelOutput] | Mapping[str, str],
        *,
        plain_prompt_only: bool = False,
    ) -> None:
        super().__init__(spec)
        if isinstance(outputs, Mapping):
            self._answers = dict(outputs)
        else:
            self._answers = {o.instruction: o.output for o in outputs}
        self._stripped = {k.strip(): v for k, v in self._answers.items()}
        self.plain_prompt_only = plain_prompt_only
        self.calls = 0

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ReplayBackend:
        """The backend of a pool model of kind ``replay``, over the recording at its ``replay``
        path (a :class:`ConfigError` if it is missing or malformed)."""
        if spec.replay is None:
            raise ConfigError(
                f"pool model '{spec.alias}'", "replay", "the path of the model's recorded answers"
            )
        return cls(spec, load_model_outputs(spec.replay))

    def _answer(self, request: ChatRequest) -> Completion:
        self.calls += 1
        users = [content for role, content in request.messages if role == "user"]
        if not users:
            raise ModelCallError(self.spec.alias, "bad_request", "the request has no user message")
        if self.plain_prompt_only and len(request.messages) != 1:
            raise ModelCallError(
                self.spec.alias,
                "not_found",
                "no recording of this model answering with a system message or references "
                "(replays are faithful at layer 0 only)",
            )
        instruction = users[-1]
        text = self._answers.get(instruction)
        if text is None:
            text = self._stripped.get(instruction.strip())
        if text is None:
            raise ModelCallError(
                self.spec.alias,
                "not_found",
                f"no recorded output of {self.spec.model} for the instruction {instruction[:60]!r}",
            )
        prompt_text = "".join(content for _, content in request.messages)
        return Completion(
            text, estimate_tokens(prompt_text), estimate_tokens(text), "stop", usage_estimated=True
        )

    async def complete(self, request: ChatRequest) -> Completion:
        return self._answer(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Completion]:
        completion = self._answer(request)
        if completion.text:
            yield completion.text
        yield completion
