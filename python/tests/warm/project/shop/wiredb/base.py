"""SQLite, plus for each connection a socket to the test, on which closing the
connection sends a goodbye first: the shape of a PostgreSQL connection, whose close()
sends Terminate over its socket and so ends the session of whoever shares it."""

import os
import socket

from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper


class DatabaseWrapper(SQLiteDatabaseWrapper):
    wire = None

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        self.wire = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wire.connect(os.environ["WARM_TEST_WIRE"])
        self.wire.sendall(f"hello {os.getpid()}\n".encode())
        return connection

    def _close(self):
        if self.wire is not None:
            wire, self.wire = self.wire, None
            try:
                wire.sendall(f"bye {os.getpid()}\n".encode())
            except OSError:
                pass
            try:
                wire.close()
            except OSError:
                pass
        super()._close()
