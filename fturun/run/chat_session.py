"""``fturun chat REF``: a conversation in the terminal with a chat model fturun trained, through
the chat template it was trained with (saved with its tokenizer), its answers streamed token by
token and stopped at the template's end of turn, with the recipe's ``generation`` settings.

Each line is a user turn, or a command: ``/reset`` (a new conversation, the system text
kept), ``/system TEXT`` (the system turn of the conversation from now on; ``/system`` alone
removes it), ``/exit``. The same lines can come from a file or a pipe (stdin not a terminal):
the answers are then written one a line after ``assistant: ``, so a conversation is
scriptable and testable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..core.errors import UsageError
from .inference import LoadedModel, generate_answer

COMMANDS = ("/reset", "/system TEXT", "/exit")


def check_chat_model(loaded: LoadedModel) -> None:
    """Only a generating model with a chat template can chat; anything else is a usage error
    saying what to use instead."""
    ref = loaded.source.ref
    if not loaded.task.generates or getattr(loaded.model.config, "is_encoder_decoder", False):
        raise UsageError(f"model '{ref}' is a {loaded.task.name} model: fturun chat talks to "
                         "causal LMs; score it with 'fturun predict'")
    if not loaded.tokenizer.chat_template:
        raise UsageError(f"model '{ref}' has no chat template: it was trained on plain text, "
                         "not conversations (data.format with data.chat_template); use 'fturun "
                         "predict' to continue texts")


class ChatSession:
    """One conversation: the system text, the turns so far, and how an answer is made."""

    def __init__(self, loaded: LoadedModel, system: str | None = None):
        from ..chat.conversation import end_of_turn_ids

        self.loaded, self.system = loaded, system
        self.turns: list = []
        self.stop_ids = end_of_turn_ids(loaded.tokenizer)

    def messages(self) -> list:
        """The conversation as the template renders it."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def answer(self, text: str, stream: Callable[[str], None] | None = None) -> str:
        """The model's answer to the user turn ``text`` (streamed to ``stream``), added to the
        conversation."""
        from ..chat.conversation import encode_rendered, render

        self.turns.append({"role": "user", "content": text})
        tokenizer = self.loaded.tokenizer
        ids = encode_rendered(render(self.messages(), tokenizer, add_generation_prompt=True),
                              tokenizer)
        reply = generate_answer(self.loaded, ids, stream=stream, stop_ids=self.stop_ids)
        self.turns.append({"role": "assistant", "content": reply})
        return reply

    def command(self, line: str) -> str | None:
        """Run a ``/command``; returns what to tell the user, or None for ``/exit``."""
        name, _, rest = line.strip().partition(" ")
        if name == "/exit":
            return None
        if name == "/reset":
            self.turns = []
            return "(a new conversation)"
        if name == "/system":
            self.system, self.turns = rest.strip() or None, []
            return f"(system: {self.system})" if self.system else "(no system text)"
        return f"(unknown command {name}; commands: {', '.join(COMMANDS)})"


def run_chat(session: ChatSession, lines: Iterable[str], write: Callable[[str], None],
             prompt: Callable[[], None] | None = None) -> int:
    """Answer each line of ``lines`` (commands run) until ``/exit`` or the end; ``write``
    shows text as it comes, ``prompt()`` shows the user's prompt before each line (a
    terminal). Returns the number of answers."""
    answers = 0
    if prompt:
        prompt()
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            pass
        elif line.startswith("/"):
            told = session.command(line)
            if told is None:
                break
            write(told + "\n")
        else:
            write("assistant: ")
            session.answer(line, stream=write)
            write("\n")
            answers += 1
        if prompt:
            prompt()
    return answers
