// fieldtune's UART bridge for CXXRTL models: drives a design's `rx` input from a byte queue and
// decodes the bytes its `tx` output sends, at bit level, in native code.
//
// It is a separate shared library (independent of the design, compiled once) that drives a
// model loaded by cxxrtl.py through the model's own C ABI (cxxrtl_harness.cc), whose functions
// it receives as pointers: ft_wait, ft_step, ft_set, ft_get, ft_cycles. Python crosses into C
// once per `run`, never once per bit.
//
// Line format: 8N1, idle high, least significant bit first, `bit_cycles` clock cycles per bit.
// Transmit (host -> rx): each queued byte is a start bit, 8 data bits and a stop bit, back to
// back. Receive (tx -> host): event-driven; while the line is idle the bridge waits natively
// for tx to fall (ft_wait), then samples the middle of the start bit, of each data bit and of
// the stop bit. A start bit that is high again in its middle is a glitch (ignored); a low stop
// bit is a framing error (the byte is dropped and counted). Full duplex: rx changes and tx
// samples interleave in time order.

#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

namespace {

typedef int64_t (*wait_fn)(void *, uint32_t, void *const *, const uint32_t *, uint64_t);
typedef void (*step_fn)(void *, uint64_t);
typedef int (*set_fn)(void *, void *, const uint32_t *);
typedef void (*get_fn)(void *, void *, uint32_t *);
typedef uint64_t (*cycles_fn)(void *);

const uint64_t NEVER = UINT64_MAX;

struct bridge {
	void *sim;
	void *rx, *tx;
	wait_fn wait;
	step_fn step;
	set_fn set;
	get_fn get;
	cycles_fn cycles;
	uint64_t bit_cycles;
	// transmit to rx
	std::deque<uint8_t> queue;
	int rx_bit;              // bit of the current frame being sent (0 start .. 9 stop), -1 idle
	uint32_t rx_level;
	uint8_t rx_byte;
	uint64_t rx_next;        // cycle of the next rx change (NEVER when idle)
	// receive from tx
	int tx_bit;              // -1 idle, 0 start bit, 1..8 data, 9 stop
	uint64_t tx_sample;      // cycle of the next sample (NEVER when idle)
	uint32_t tx_byte;
	std::vector<uint8_t> received;
	uint64_t framing_errors;
};

void drive(bridge *b, uint32_t level) {
	b->rx_level = level;
	b->set(b->sim, b->rx, &b->rx_level);
}

// Start sending the next queued byte (if any) at cycle `now`.
void next_rx_frame(bridge *b, uint64_t now) {
	if (b->queue.empty()) {
		b->rx_bit = -1;
		b->rx_next = NEVER;
		return;
	}
	b->rx_byte = b->queue.front();
	b->queue.pop_front();
	b->rx_bit = 0;
	drive(b, 0);
	b->rx_next = now + b->bit_cycles;
}

void rx_change(bridge *b, uint64_t now) {
	b->rx_bit++;
	if (b->rx_bit <= 8) {
		drive(b, (b->rx_byte >> (b->rx_bit - 1)) & 1);
		b->rx_next = now + b->bit_cycles;
	} else if (b->rx_bit == 9) {
		drive(b, 1);
		b->rx_next = now + b->bit_cycles;
	} else {
		next_rx_frame(b, now);
	}
}

uint32_t tx_level(bridge *b) {
	uint32_t v = 0;
	b->get(b->sim, b->tx, &v);
	return v & 1;
}

// Returns 1 if a byte completed and it was the delimiter 0x00.
int tx_sample(bridge *b, uint64_t now) {
	uint32_t level = tx_level(b);
	if (b->tx_bit == 0) {
		if (level) {             // glitch: back to idle
			b->tx_bit = -1;
			b->tx_sample = NEVER;
			return 0;
		}
		b->tx_byte = 0;
	} else if (b->tx_bit <= 8) {
		b->tx_byte |= level << (b->tx_bit - 1);
	} else {
		b->tx_bit = -1;
		b->tx_sample = NEVER;
		if (!level) {
			b->framing_errors++;
			return 0;
		}
		b->received.push_back((uint8_t)b->tx_byte);
		return b->tx_byte == 0;
	}
	b->tx_bit++;
	b->tx_sample = now + b->bit_cycles;
	return 0;
}

} // namespace

extern "C" {

bridge *ft_uart_create(void *sim, void *rx, void *tx, void *wait, void *step, void *set,
                       void *get, void *cycles, uint64_t bit_cycles) {
	bridge *b = new bridge{};
	b->sim = sim;
	b->rx = rx;
	b->tx = tx;
	b->wait = (wait_fn)wait;
	b->step = (step_fn)step;
	b->set = (set_fn)set;
	b->get = (get_fn)get;
	b->cycles = (cycles_fn)cycles;
	b->bit_cycles = bit_cycles;
	b->rx_bit = -1;
	b->rx_next = NEVER;
	b->tx_bit = -1;
	b->tx_sample = NEVER;
	drive(b, 1);
	return b;
}

void ft_uart_destroy(bridge *b) {
	delete b;
}

// Queue bytes to send on rx.
void ft_uart_send(bridge *b, const uint8_t *data, uint64_t count) {
	b->queue.insert(b->queue.end(), data, data + count);
	if (b->rx_bit < 0)
		next_rx_frame(b, b->cycles(b->sim));
}

// Bytes queued or being sent on rx.
uint64_t ft_uart_pending(bridge *b) {
	return b->queue.size() + (b->rx_bit >= 0 ? 1 : 0);
}

// Run at most `max_cycles` cycles; stop early after a delimiter byte (0x00) arrived on tx if
// `until_delimiter` (and, when `drain` is set, only once no queued byte is left to start on
// rx: the one on the line, if any, is the last).
// Returns the cycles run.
uint64_t ft_uart_run(bridge *b, uint64_t max_cycles, int until_delimiter, int drain) {
	uint64_t start = b->cycles(b->sim), now = start, end = start + max_cycles;
	if (end < start)
		end = NEVER;
	while (now < end) {
		uint64_t next = end;
		if (b->rx_next < next)
			next = b->rx_next;
		if (b->tx_sample < next)
			next = b->tx_sample;
		if (b->tx_bit < 0) {
			// idle line: wait natively for the start bit's falling edge
			void *objects[1] = {b->tx};
			uint32_t low = 0;
			int64_t taken = b->wait(b->sim, 1, objects, &low, next - now);
			if (taken >= 0) {
				now += (uint64_t)taken;
				b->tx_bit = 0;
				b->tx_sample = now + b->bit_cycles / 2;
				if (b->tx_sample == now)
					b->tx_sample++;
				continue;
			}
			now = next;
		} else {
			b->step(b->sim, next - now);
			now = next;
		}
		if (now == b->rx_next)
			rx_change(b, now);
		if (now == b->tx_sample && tx_sample(b, now) && until_delimiter &&
				(!drain || b->queue.empty()))
			break;
	}
	return now - start;
}

// Copy out (and forget) the bytes received on tx; returns how many (at most `capacity`).
uint64_t ft_uart_receive(bridge *b, uint8_t *out, uint64_t capacity) {
	uint64_t n = b->received.size() < capacity ? b->received.size() : capacity;
	memcpy(out, b->received.data(), n);
	b->received.erase(b->received.begin(), b->received.begin() + n);
	return n;
}

uint64_t ft_uart_available(bridge *b) {
	return b->received.size();
}

uint64_t ft_uart_framing_errors(bridge *b) {
	return b->framing_errors;
}

} // extern "C"
