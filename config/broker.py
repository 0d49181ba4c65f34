"""kombu's filesystem transport (the embedded broker), made safe for a writer and a reader in
different processes.

kombu writes a message by opening its final file name and then writing into it, while the
reader moves and reads any file with that name at once: a reader that comes between the two
gets an empty or partial file and the message is lost. (Seen here: the sweep, publishing from a
worker while the worker consumed, lost a refresh task now and then.) Writing to a hidden
temporary name and renaming it into place makes each message appear whole or not at all.
"""

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # kombu's own classes disagree: filesystem.Channel names the argument `payload`, its base
    # AbstractChannel `message`; we keep filesystem's signature, which kombu calls positionally.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot keeps the reader from matching the file while it is being written.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise filesystem.ChannelError(
                f"Cannot add a message to {self.data_folder_out}"
            ) from exc


class Transport(filesystem.Transport):
    Channel = Channel
