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

enum exec_server_result exec_server_serve(int fd);

#endif
