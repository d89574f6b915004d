// Package export writes and reads the two file formats replay hands to the
// Python ecosystem: safetensors (model parameters, float32 little-endian) and
// NumPy .npy version 1.0 (the batch log, int64 [steps, batch]).
//
// Invariants:
//   - WriteSafetensors lays out tensor data in ascending name order (the order
//     the reference safetensors serializer uses for tensors of one dtype), with
//     no gaps: data_offsets of consecutive tensors touch and the last one ends
//     at the end of the file. The JSON header is padded with spaces so that the
//     data starts at an offset that is a multiple of 8.
//   - ReadSafetensors accepts exactly what the format allows for F32 tensors:
//     a header of at most 100 MB, offsets that tile the data buffer, and no
//     trailing bytes. It returns tensors in data order.
//   - WriteNpyInt64 writes C-order '<i8' arrays whose header is padded so the
//     data starts at a multiple of 64 bytes, as NumPy does.
//   - Writers never modify their arguments; readers return freshly allocated
//     slices. Nothing here is safe for concurrent use of one io.Writer.
package export
