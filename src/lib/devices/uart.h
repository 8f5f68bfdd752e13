/*
 * A 16550A UART at COM1 (X86_COM1_PORT, 8 ports, ISA IRQ X86_COM1_IRQ): the guest console.
 *
 * Output goes straight to a host descriptor. Input is pushed by the VMM's I/O thread with
 * uart_receive() into a bounded buffer; when the buffer is full the caller keeps the rest
 * and waits for the rx-space callback before offering more (back-pressure, no unbounded
 * queue). Transmission is instantaneous: THR is always empty again after a write.
 */
#ifndef COVE_DEVICES_UART_H
#define COVE_DEVICES_UART_H

#include <stddef.h>
#include <stdint.h>

#include "bus/io_bus.h"
#include "devices/machine_events.h"
#include "snapshot/stream.h"

/* Receive buffer size: the 16-byte FIFO plus room to absorb a burst from the host. */
#define UART_RX_CAPACITY 4096

struct uart;

/*
 * sink is copied; set_irq is called with the device lock held, so it must not call back into
 * this uart. out_fd is not owned (never closed here); -1 discards output. A blocking out_fd
 * whose reader stalls stalls the writing vCPU; give a non-blocking one to drop instead
 * (EAGAIN drops the byte). Ignore SIGPIPE if out_fd is a pipe or socket.
 */
struct uart *uart_new(const struct machine_sink *sink, unsigned gsi, int out_fd);
void uart_free(struct uart *uart);
int uart_register(struct uart *uart, struct io_bus *pio);

/* The registers, pending interrupt state and buffered input, for a snapshot; restore returns
 * false (the UART unchanged) when the section is damaged. The interrupt line is the irqchip's
 * to restore, so restore only records its level. */
void uart_save(struct uart *uart, struct snap_writer *w);
bool uart_restore(struct uart *uart, struct snap_reader *r);

/*
 * Queues up to uart_rx_space() bytes of host input and returns how many were taken. While the
 * guest has the UART in loopback mode the serial line is disconnected, so input is taken and
 * dropped (returns len). Raises the receive interrupt if the guest enabled it.
 */
size_t uart_receive(struct uart *uart, const uint8_t *buf, size_t len);
size_t uart_rx_space(struct uart *uart);

/*
 * Back-pressure: once the receive buffer has been full (uart_rx_space() == 0, whether filled
 * by uart_receive() or by the guest's own loopback writes), cb(opaque) is called once as soon
 * as the guest has drained it to at least UART_RX_WAKE_SPACE free bytes. So a producer that
 * stops reading its input when uart_rx_space() is 0, or when uart_receive() takes less than
 * offered, can wait for cb and never misses a wake-up. cb runs on a vCPU thread without the
 * device lock held, possibly concurrently with itself: signal an eventfd or similar and
 * return; it must not free the uart. NULL disables it.
 */
#define UART_RX_WAKE_SPACE (UART_RX_CAPACITY / 2)
void uart_set_rx_space_cb(struct uart *uart, void (*cb)(void *opaque), void *opaque);

#endif
