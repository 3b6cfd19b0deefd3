// fieldtune's CXXRTL harness: a C ABI over one compiled design, loaded from Python by ctypes.
//
// It is compiled with the CXXRTL C API implementation in its own translation unit and linked
// with the design emitted by `write_cxxrtl -header` (see cxxrtl.py), so the loops below (step,
// wait, run) run at native speed: Python crosses the boundary once per command or once per
// script, never once per cycle.
//
// Clocking: one clock input; a cycle is one rising edge. Inputs written between cycles take
// effect at once (they settle before the next read or edge), which matches an Amaranth
// testbench: ctx.set() then ctx.get() sees settled combinational outputs, and
// `await ctx.tick()` returns after the edge with everything settled.
//
// Speed: CXXRTL's eval() computes the combinational logic from the current state and inputs
// and, on a rising edge, the next state; commit() makes the next state current and records the
// clock's previous value for edge detection. A cycle therefore needs one eval (clock high).
// The falling edge is not evaluated unless the design has falling-edge logic (`full_edges`):
// when cxxrtl.py could name the design's edge detector (FT_PREV_CLOCK in ft_design.h) the
// harness just clears it, otherwise it commits the whole design (every register compared and
// copied: about a third of a cycle's time on the SoC). After an edge, combinational outputs
// still show the previous state until the next eval; they are evaluated lazily, when
// something reads them. Registers (objects driven only by flip-flops) are current right after
// the commit, which is what lets wait() on a register cost one eval per cycle; an output port
// that is a plain copy of a register (FT_ALIASES) is waited on through that register.

// Values cross the boundary as little-endian arrays of 32-bit chunks (CXXRTL's own storage),
// so ports and memory words of any width work.

#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>

#include <cxxrtl/capi/cxxrtl_capi.cc>
#include <cxxrtl/capi/cxxrtl_capi_vcd.cc>

// Generated per design by cxxrtl.py: includes design.h and may define FT_TOP (the toplevel
// class), FT_PREV_CLOCK (its member holding the clock's previous value) and
// FT_ALIASES(top) (pairs {output port data, register curr data} of ports that copy a register).
#include "ft_design.h"

extern "C" cxxrtl_toplevel cxxrtl_design_create();

namespace {

// Script opcodes (fieldtune.sim.engines.hdl.OP_*): the same numbers as the script files of
// the Verilator and Icarus drivers.
enum { OP_SET = 0, OP_STEP = 1, OP_WAIT = 2, OP_SAMPLE = 3, OP_CONDITION = 4 };

struct ft_alias {
	cxxrtl_object *port;      // an output that is a plain copy of...
	cxxrtl_object *reg;       // ...this register
};

struct ft_sim {
	cxxrtl_handle handle;
	cxxrtl_object *clock;
	bool full_edges;       // evaluate falling edges too (the design has falling-edge logic)
	bool changed;          // an input or memory was written since the last eval
	bool stale;            // a clock edge was committed since the last eval
	uint64_t cycles;       // rising edges since creation or the last power-on reset
	cxxrtl_vcd vcd;
	FILE *vcd_file;
	std::vector<ft_alias> aliases;
};

size_t chunks_of(const cxxrtl_object *object) {
	return (object->width + 31) / 32;
}

void settle(ft_sim *sim) {
	if (sim->changed || sim->stale) {
		cxxrtl_step(sim->handle);
		sim->changed = sim->stale = false;
	}
}

void vcd_flush(ft_sim *sim) {
	const char *data;
	size_t size;
	cxxrtl_vcd_read(sim->vcd, &data, &size);
	if (size)
		fwrite(data, 1, size, sim->vcd_file);
}

// Timestamps in ns: rising edge number c (from 1) at 10*c, the falling edge before it at
// 10*c - 5; inputs set between cycles therefore change with the falling edge.
void vcd_sample(ft_sim *sim, uint64_t time) {
	if (sim->vcd) {
		cxxrtl_vcd_sample(sim->vcd, time);
		vcd_flush(sim);
	}
}

// The falling edge of a design without falling-edge logic: only the edge detector changes
// (every register was committed with the rising edge, inputs are written in place).
inline void fall(ft_sim *sim) {
#if defined(FT_TOP) && defined(FT_PREV_CLOCK)
	static_cast<FT_TOP &>(*sim->handle->module).FT_PREV_CLOCK = cxxrtl::value<1>{0u};
#else
	sim->clock->next[0] = 0;
	cxxrtl_commit(sim->handle);
#endif
}

inline void edge(ft_sim *sim) {
	// New inputs settle before the edge samples them (designs with combinational feedback need
	// more than the one eval of the edge itself).
	if (sim->changed)
		settle(sim);
	if (sim->full_edges || sim->vcd) {
		sim->clock->next[0] = 0;
		cxxrtl_step(sim->handle);
		vcd_sample(sim, sim->cycles * 10 + 5);
	} else {
		fall(sim);
	}
	sim->clock->next[0] = 1;
	cxxrtl_step(sim->handle);
	sim->cycles++;
	sim->stale = true;
	if (sim->vcd) {
		settle(sim);
		vcd_sample(sim, sim->cycles * 10);
	}
}

// Objects whose every bit is a flip-flop output are current right after an edge's commit.
inline bool registered(const cxxrtl_object *object) {
	return object->type == CXXRTL_WIRE &&
		(object->flags & (CXXRTL_DRIVEN_SYNC | CXXRTL_DRIVEN_COMB | CXXRTL_UNDRIVEN)) ==
			CXXRTL_DRIVEN_SYNC;
}

// What a wait watches for `object`: the register it copies, if it is such an output.
cxxrtl_object *watched(const ft_sim *sim, cxxrtl_object *object) {
	if (!registered(object))
		for (const ft_alias &alias : sim->aliases)
			if (alias.port == object)
				return alias.reg;
	return object;
}

inline bool equals(const cxxrtl_object *object, const uint32_t *value) {
	size_t n = chunks_of(object);
	for (size_t i = 0; i < n; i++)
		if (object->curr[i] != value[i])
			return false;
	return true;
}

// The single-part object of type `type` with flags `flags` (masked by `mask`) whose current
// value lives at `data` (several objects share storage: aliases, a port and its wire).
cxxrtl_object *object_at(cxxrtl_handle handle, const void *data, uint32_t type, uint32_t mask,
                         uint32_t flags) {
	struct search {
		const void *data;
		uint32_t type, mask, flags;
		cxxrtl_object *found;
	} s{data, type, mask, flags, nullptr};
	cxxrtl_enum(handle, &s, [](void *p, const char *, cxxrtl_object *object, size_t parts) {
		auto *s = (search *)p;
		if (parts == 1 && object->curr == s->data && object->type == s->type &&
				(object->flags & s->mask) == s->flags && !s->found)
			s->found = object;
	});
	return s.found;
}

void find_aliases(ft_sim *sim) {
#if defined(FT_TOP) && defined(FT_ALIASES)
	auto &top = static_cast<FT_TOP &>(*sim->handle->module);
	const void *pairs[][2] = { FT_ALIASES(top) };
	const uint32_t driven = CXXRTL_DRIVEN_SYNC | CXXRTL_DRIVEN_COMB | CXXRTL_UNDRIVEN;
	for (auto &pair : pairs) {
		cxxrtl_object *port = object_at(sim->handle, pair[0], CXXRTL_VALUE, CXXRTL_OUTPUT,
		                                CXXRTL_OUTPUT);
		cxxrtl_object *reg = object_at(sim->handle, pair[1], CXXRTL_WIRE, driven,
		                               CXXRTL_DRIVEN_SYNC);
		if (port && reg && port->width == reg->width)
			sim->aliases.push_back({port, reg});
	}
#else
	(void)sim;
#endif
}

// Clock until any of `count` objects equals its value (`values[c]` its chunks), checking
// before the first edge and after each edge. Returns the number of edges taken (0 if one
// already matched), -1 after `max_cycles` edges without a match, -2 if an object is an outline
// (those need an explicit evaluation; wait on a port or register).
int64_t wait_for(ft_sim *sim, uint32_t count, cxxrtl_object *const *objects,
                 const uint32_t *const *values, uint64_t max_cycles) {
	settle(sim);
	std::vector<cxxrtl_object *> watch(count);
	bool fresh = true;
	for (uint32_t c = 0; c < count; c++) {
		if (objects[c]->type == CXXRTL_OUTLINE)
			return -2;
		watch[c] = watched(sim, objects[c]);
		fresh = fresh && registered(watch[c]);
	}
	auto matched = [&]() {
		for (uint32_t c = 0; c < count; c++)
			if (equals(watch[c], values[c]))
				return true;
		return false;
	};
	if (matched())
		return 0;
	for (uint64_t i = 1; i <= max_cycles; i++) {
		edge(sim);
		if (!fresh)
			settle(sim);
		if (matched())
			return (int64_t)i;
	}
	return -1;
}

} // namespace

extern "C" {

// Create the design; `clock` names its clock input (e.g. "clk"); `full_edges` evaluates falling
// edges as well (needed when the design has logic on the falling edge). NULL if there is no
// such single-bit input.
ft_sim *ft_create(const char *clock, int full_edges) {
	cxxrtl_handle handle = cxxrtl_create(cxxrtl_design_create());
	size_t parts = 0;
	cxxrtl_object *clk = cxxrtl_get_parts(handle, clock, &parts);
	if (!clk || parts != 1 || clk->width != 1 || !clk->next || !(clk->flags & CXXRTL_INPUT)) {
		cxxrtl_destroy(handle);
		return nullptr;
	}
	ft_sim *sim = new ft_sim{handle, clk, full_edges != 0, true, false, 0, nullptr, nullptr, {}};
	find_aliases(sim);
	settle(sim);
	return sim;
}

void ft_destroy(ft_sim *sim) {
	if (sim->vcd) {
		cxxrtl_vcd_destroy(sim->vcd);
		fclose(sim->vcd_file);
	}
	cxxrtl_destroy(sim->handle);
	delete sim;
}

// Power-on reset: every register and memory back to its initial value, cycle count 0.
void ft_reset(ft_sim *sim) {
	cxxrtl_reset(sim->handle);
	sim->cycles = 0;
	sim->changed = true;
	settle(sim);
}

uint64_t ft_cycles(ft_sim *sim) {
	return sim->cycles;
}

// Output ports a wait watches through the register they copy (a diagnostic for the tests).
uint32_t ft_aliases(ft_sim *sim) {
	return (uint32_t)sim->aliases.size();
}

// Look up an object by hierarchical name (levels separated by spaces). Returns NULL when it
// does not exist or is split into several parts.
cxxrtl_object *ft_object(ft_sim *sim, const char *name) {
	size_t parts = 0;
	cxxrtl_object *object = cxxrtl_get_parts(sim->handle, name, &parts);
	return (object && parts == 1) ? object : nullptr;
}

// Description of an object: type (cxxrtl_type), flags (cxxrtl_flag), width, depth.
void ft_describe(const cxxrtl_object *object, uint32_t *type, uint32_t *flags,
                 uint64_t *width, uint64_t *depth) {
	*type = object->type;
	*flags = object->flags;
	*width = object->width;
	*depth = object->depth;
}

// Calls `callback(name, type, flags, width, depth)` for every single-part object.
void ft_enumerate(ft_sim *sim, void (*callback)(const char *, uint32_t, uint32_t, uint64_t,
                                                uint64_t)) {
	cxxrtl_enum(sim->handle, (void *)callback,
		[](void *data, const char *name, cxxrtl_object *object, size_t parts) {
			if (parts != 1)
				return;
			auto cb = (void (*)(const char *, uint32_t, uint32_t, uint64_t, uint64_t))data;
			cb(name, object->type, object->flags, object->width, object->depth);
		});
}

// Write an input (or the `next` state of a register). Returns 0 if the object is read-only.
int ft_set(ft_sim *sim, cxxrtl_object *object, const uint32_t *value) {
	if (!object->next)
		return 0;
	memcpy(object->next, value, chunks_of(object) * 4);
	sim->changed = true;
	return 1;
}

void ft_get(ft_sim *sim, cxxrtl_object *object, uint32_t *value) {
	settle(sim);
	if (object->type == CXXRTL_OUTLINE)
		cxxrtl_outline_eval(object->outline);
	memcpy(value, object->curr, chunks_of(object) * 4);
}

void ft_step(ft_sim *sim, uint64_t cycles) {
	for (uint64_t i = 0; i < cycles; i++)
		edge(sim);
}

// Clock until any of `count` objects equals its value (`values` holds their chunks one after
// the other); see wait_for.
int64_t ft_wait(ft_sim *sim, uint32_t count, cxxrtl_object *const *objects,
                const uint32_t *values, uint64_t max_cycles) {
	std::vector<const uint32_t *> each(count);
	for (uint32_t c = 0; c < count; c++) {
		each[c] = values;
		values += chunks_of(objects[c]);
	}
	return wait_for(sim, count, objects, each.data(), max_cycles);
}

// Run a whole script: `count` commands of four words each {op, slot, offset, cycles}: OP_SET
// writes slot's object from values[offset...]; OP_STEP clocks `cycles` edges; OP_CONDITION
// adds "slot equals values[offset...]" to the next wait; OP_WAIT adds its own condition and
// waits at most `cycles` edges; OP_SAMPLE records slot's settled value. Records go to `out`
// one after the other: a wait as two chunks (int64 edges taken, -1 on timeout), a sample as
// its object's chunks. Returns 0, or -2 (a wait on an outline), -3 (an unknown opcode), -4 (a
// set of a read-only object), each stopping the script there.
int ft_run(ft_sim *sim, uint64_t count, const uint64_t *commands, cxxrtl_object *const *slots,
           const uint32_t *values, uint32_t *out) {
	std::vector<cxxrtl_object *> objects;
	std::vector<const uint32_t *> wanted;
	for (uint64_t k = 0; k < count; k++, commands += 4) {
		uint64_t op = commands[0];
		cxxrtl_object *object = slots[commands[1]];
		const uint32_t *value = values + commands[2];
		switch (op) {
		case OP_SET:
			if (!ft_set(sim, object, value))
				return -4;
			break;
		case OP_STEP:
			ft_step(sim, commands[3]);
			break;
		case OP_CONDITION:
		case OP_WAIT:
			objects.push_back(object);
			wanted.push_back(value);
			if (op == OP_WAIT) {
				int64_t taken = wait_for(sim, (uint32_t)objects.size(), objects.data(),
				                         wanted.data(), commands[3]);
				if (taken == -2)
					return -2;
				memcpy(out, &taken, 8);
				out += 2;
				objects.clear();
				wanted.clear();
			}
			break;
		case OP_SAMPLE:
			ft_get(sim, object, out);
			out += chunks_of(object);
			break;
		default:
			return -3;
		}
	}
	return 0;
}

// Memory words [first, first + count) as chunks (element after element). Returns 0 when the
// range is outside the memory.
int ft_mem_read(ft_sim *sim, cxxrtl_object *memory, uint64_t first, uint64_t count,
                uint32_t *words) {
	if (memory->type != CXXRTL_MEMORY || first + count > memory->depth || first + count < first)
		return 0;
	size_t n = chunks_of(memory);
	memcpy(words, memory->curr + first * n, count * n * 4);
	return 1;
}

int ft_mem_write(ft_sim *sim, cxxrtl_object *memory, uint64_t first, uint64_t count,
                 const uint32_t *words) {
	if (memory->type != CXXRTL_MEMORY || first + count > memory->depth || first + count < first)
		return 0;
	size_t n = chunks_of(memory);
	memcpy(memory->curr + first * n, words, count * n * 4);
	// Asynchronous read ports see the new contents at once.
	sim->changed = true;
	return 1;
}

// Start writing every signal (memories too when `memories` is non-zero) to a VCD file.
int ft_vcd_open(ft_sim *sim, const char *path, int memories) {
	if (sim->vcd)
		return 0;
	FILE *file = fopen(path, "wb");
	if (!file)
		return 0;
	settle(sim);
	sim->vcd = cxxrtl_vcd_create();
	sim->vcd_file = file;
	cxxrtl_vcd_timescale(sim->vcd, 1, "ns");
	if (memories)
		cxxrtl_vcd_add_from(sim->vcd, sim->handle);
	else
		cxxrtl_vcd_add_from_without_memories(sim->vcd, sim->handle);
	vcd_sample(sim, sim->cycles * 10);
	return 1;
}

void ft_vcd_close(ft_sim *sim) {
	if (!sim->vcd)
		return;
	vcd_flush(sim);
	cxxrtl_vcd_destroy(sim->vcd);
	fclose(sim->vcd_file);
	sim->vcd = nullptr;
	sim->vcd_file = nullptr;
}

} // extern "C"
