/*
 * The host side of the cove-agent protocol (docs/agent-protocol.md) over an already connected
 * stream (normally vsock port COVE_AGENT_PORT, see cove_vm_connect). vm.c connects; this file
 * speaks the protocol. The public cove_exec_* functions of cove.h live in exec.c too.
 *
 * Each call takes ownership of agent_fd and closes it (for an exec: when the exec is freed),
 * also when it fails. timeout_ms bounds the handshake (for an exec: until the command started
 * or failed to) and, for the one-shot requests, the whole request; -1 means no limit.
 *
 * exec_start returns NULL with error filled when the agent could not be spoken to or refused
 * the request; a command that could not start gives an exec that has already ended
 * COVE_EXEC_FAILED (code: the guest's errno, message: why). The others return 0 or a negative
 * errno with error filled; an agent's ERROR reply keeps its errno (-ENOENT, -EISDIR, ...).
 */
#ifndef COVE_EXEC_H
#define COVE_EXEC_H

#include <stdint.h>

#include <cove/cove.h>

cove_exec *exec_start(int agent_fd, const cove_exec_options *options, int timeout_ms,
                      cove_error *error);
int agent_copy_in(int agent_fd, int src_fd, const char *guest_path, uint32_t mode, int timeout_ms,
                  cove_error *error);
int agent_copy_out(int agent_fd, const char *guest_path, int dst_fd, int timeout_ms,
                   cove_error *error);
int agent_shutdown(int agent_fd, int timeout_ms, cove_error *error);
/* Tells the agent of a guest restored from a snapshot the time and fresh entropy (RESUME). */
int agent_resume(int agent_fd, int timeout_ms, cove_error *error);

#endif
