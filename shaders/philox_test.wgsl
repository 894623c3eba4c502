// Philox twin test: each thread turns (counter, key) words into Philox output words, and
// the u32 -> uniform and Box-Muller maps.
// Input per item: ctr (4 words), key (2 words), 2 words padding = 8 words.
// Output per item: 4 Philox words, then bitcast f32 uniform of word 0, and the normal from
// words 0 and 1 = 6 words.

@group(0) @binding(0) var<storage, read> inputs: array<u32>;
@group(0) @binding(1) var<storage, read_write> outputs: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i * 8u >= arrayLength(&inputs)) {
        return;
    }
    let b = i * 8u;
    let ctr = vec4<u32>(inputs[b], inputs[b + 1u], inputs[b + 2u], inputs[b + 3u]);
    let key = vec2<u32>(inputs[b + 4u], inputs[b + 5u]);
    let w = philox4x32_10(ctr, key);
    let o = i * 6u;
    outputs[o] = w.x;
    outputs[o + 1u] = w.y;
    outputs[o + 2u] = w.z;
    outputs[o + 3u] = w.w;
    outputs[o + 4u] = bitcast<u32>(u32_to_uniform(w.x));
    outputs[o + 5u] = bitcast<u32>(box_muller(u32_to_uniform(w.x), u32_to_uniform(w.y)));
}
