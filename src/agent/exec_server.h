/*
 * cove-agent's request server: one connection from the host (docs/agent-protocol.md).
 *
 * PID 1 accepts each vsock connection and forks a child that calls exec_server_serve(), so a
 * misbehaving connection can only take down its own child. The server answers every request
 * on it (exec, file copy in/out, shutdown), and a malformed or oversized message gets an error
 * reply and ends the connection, never a crash. When the host goes away mid-stream the
 * command is killed (its whole process group) and the child exits.
 */
#ifndef COVE_AGENT_EXEC_SERVER_H
#define COVE_AGENT_EXEC_SERVER_H

enum exec_server_result {
    EXEC_SERVER_DONE,     /* the connection ended */
    EXEC_SERVER_SHUTDOWN, /* the host asked for a power-off: the caller syncs and powers off */
};

/*
 * Serves the one request on the connected stream fd. fd is left open (the caller closes it or
 * exits); by then every reply has been handed to the socket. Sets SIGPIPE to ignored and
 * SIGCHLD to its default in the calling process, which is expected to be the connection's own
 * child. Never logs: environment values may be secrets.
 */
enum exec_server_result exec_server_serve(int fd);

#endif
