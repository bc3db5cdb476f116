"""What reaches a bot's control loop from its other threads (handler runs, duties' senders, a stop).

Each put also writes a byte to a pipe, so that the loop can sleep on the pipe and its database socket at
once (select) and wake for whichever speaks first: no thread of its own for either, and no polling.
"""

import os
import queue


class Inbox:
    def __init__(self):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def fileno(self) -> int:
        """Readable while something waits to be taken."""
        return self._read_fd

    def put(self, item):
        self._items.put(item)
        try:
            os.write(self._write_fd, b"!")
        except BlockingIOError:
            pass  # the pipe is full of rings already: the loop is woken anyway
        except OSError:
            pass  # closed: the bot is stopping, and takes what is left from the queue

    def take_all(self) -> list:
        """Everything put so far, oldest first; never waits. The pipe is emptied first, so an item put
        meanwhile rings it again and the next wait returns at once."""
        try:
            while os.read(self._read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        items = []
        while True:
            try:
                items.append(self._items.get_nowait())
            except queue.Empty:
                return items

    def empty(self) -> bool:
        return self._items.empty()

    def close(self):
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
