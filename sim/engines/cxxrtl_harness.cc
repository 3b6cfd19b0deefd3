// fieldtune's CXXRTL harness: a C ABI over one compiled design, loaded from Python by ctypes.
//
// It is compiled in one translation unit with the design emitted by `write_cxxrtl` and the
// CXXRTL C API implementation (see cxxrtl.py), so the loops below (step, wait) run at native
// speed: Python crosses the boundary once per command, never once per cycle.
//
// Clocking: one clock input; a cycle is one rising edge. Inputs written between cycles take
// effect at once (they settle before the next read or edge), which matches an Amaranth
// testbench: ctx.set() then ctx.get() sees settled combinational outputs, and
// `await ctx.tick()` returns after the edge with everything settled.
//
// Speed: CXXRTL's eval() computes the combinational logic from the current state and inputs
// and, on a rising edge, the next state; commit() makes the next state current and records the
// clock's previous value for edge detection. A cycle therefore needs one eval (clock high) and
// two commits: the falling edge only has to be committed, not evaluated, unless the design
// has falling-edge logic (`full_edges`). After an edge, combinational outputs still show the
// previous state until the next eval; they are evaluated lazily, when something reads them.
// Registers (objects driven only by flip-flops) are current right after the commit, which is
// what lets wait() on a status register cost one eval per cycle.

// Values cross the boundary as little-endian arrays of 32-bit chunks (CXXRTL's own storage),
// so ports and memory words of any width work.

#include <cstdio>
#include <cstdint>
#include <cstring>
#include <cxxrtl/capi/cxxrtl_capi.h>
#include <cxxrtl/capi/cxxrtl_capi_vcd.h>

extern "C" cxxrtl_toplevel cxxrtl_design_create();

namespace {

struct ft_sim {
	cxxrtl_handle handle;
	cxxrtl_object *clock;
	bool full_edges;       // evaluate falling edges too (the design has falling-edge logic)
	bool changed;          // an input or memory was written since the last eval
	bool stale;            // a clock edge was committed since the last eval
	uint64_t cycles;       // rising edges since creation or the last power-on reset
	cxxrtl_vcd vcd;
	FILE *vcd_file;
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

inline void edge(ft_sim *sim) {
	// New inputs settle before the edge samples them (designs with combinational feedback need
	// more than the one eval of the edge itself).
	if (sim->changed)
		settle(sim);
	sim->clock->next[0] = 0;
	if (sim->full_edges || sim->vcd) {
		cxxrtl_step(sim->handle);
		vcd_sample(sim, sim->cycles * 10 + 5);
	} else {
		cxxrtl_commit(sim->handle);
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

inline bool equals(const cxxrtl_object *object, const uint32_t *value) {
	size_t n = chunks_of(object);
	for (size_t i = 0; i < n; i++)
		if (object->curr[i] != value[i])
			return false;
	return true;
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
	ft_sim *sim = new ft_sim{handle, clk, full_edges != 0, true, false, 0, nullptr, nullptr};
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
// the other), checking before the first edge and after each edge. Returns the number of edges
// taken (0 if one already matched), -1 after `max_cycles` edges without a match, -2 if an
// object is an outline (those need an explicit evaluation; wait on a port or register).
int64_t ft_wait(ft_sim *sim, uint32_t count, cxxrtl_object *const *objects,
                const uint32_t *values, uint64_t max_cycles) {
	settle(sim);
	bool fresh = true;
	for (uint32_t c = 0; c < count; c++) {
		if (objects[c]->type == CXXRTL_OUTLINE)
			return -2;
		fresh = fresh && registered(objects[c]);
	}
	auto matched = [&]() {
		const uint32_t *value = values;
		for (uint32_t c = 0; c < count; c++) {
			if (equals(objects[c], value))
				return true;
			value += chunks_of(objects[c]);
		}
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
