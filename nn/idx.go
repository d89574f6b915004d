package nn

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// IDX magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
const (
	idxImages = 0x00000803
	idxLabels = 0x00000801
)

// fashionClasses is the number of Fashion-MNIST classes.
const fashionClasses = 10

func loadFashionMNIST(dir string) (train, test *Dataset, err error) {
	if train, err = loadIDXPair(dir, "train", "fashion-mnist"); err != nil {
		return nil, nil, err
	}
	if test, err = loadIDXPair(dir, "t10k", "fashion-mnist"); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// loadIDXPair reads <prefix>-images-idx3-ubyte.gz and
// <prefix>-labels-idx1-ubyte.gz (or the same names without .gz) from dir.
func loadIDXPair(dir, prefix, name string) (*Dataset, error) {
	imgs, err := openIDX(dir, prefix+"-images-idx3-ubyte")
	if err != nil {
		return nil, err
	}
	defer imgs.Close()
	labs, err := openIDX(dir, prefix+"-labels-idx1-ubyte")
	if err != nil {
		return nil, err
	}
	defer labs.Close()
	d, err := ReadIDX(imgs, labs, fashionClasses)
	if err != nil {
		return nil, fmt.Errorf("%s %s in %s: %w", name, prefix, dir, err)
	}
	d.Name = name
	return d, nil
}

type idxFile struct {
	io.Reader
	f  *os.File
	gz *gzip.Reader
}

func (f *idxFile) Close() error {
	if f.gz != nil {
		f.gz.Close()
	}
	return f.f.Close()
}

// openRegular opens path for reading if it is a regular file. The open does
// not block (O_NONBLOCK): a FIFO or a device in the data directory is an
// error at once rather than a read that waits for a writer forever.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%v): %w", path, fi.Mode().Type(), ErrFormat)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func openIDX(dir, base string) (*idxFile, error) {
	path := filepath.Join(dir, base+".gz")
	f, err := openRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		if f, err = openRegular(filepath.Join(dir, base)); err == nil {
			return &idxFile{Reader: bufio.NewReaderSize(f, 1<<16), f: f}, nil
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s missing in %s (install the Debian package dataset-fashion-mnist, or give the directory holding the IDX files): %w",
				ErrNoData, base+".gz", dir, err)
		}
		if errors.Is(err, ErrFormat) {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	gz, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w: %w", path, ErrFormat, err)
	}
	return &idxFile{Reader: bufio.NewReaderSize(gz, 1<<16), f: f, gz: gz}, nil
}

// ReadIDX reads a data set from uncompressed IDX streams: images (magic
// 0x803, N×rows×cols unsigned bytes) and labels (magic 0x801, N bytes, each
// < classes). Samples keep file order; Y is one-hot. The pixels are kept as
// bytes in Pixels (X is nil); Input scales them by 1/255.
func ReadIDX(images, labels io.Reader, classes int) (*Dataset, error) {
	var ih [4]uint32
	if err := binary.Read(images, binary.BigEndian, ih[:]); err != nil {
		return nil, fmt.Errorf("images header: %w: %w", ErrFormat, err)
	}
	var lh [2]uint32
	if err := binary.Read(labels, binary.BigEndian, lh[:]); err != nil {
		return nil, fmt.Errorf("labels header: %w: %w", ErrFormat, err)
	}
	if ih[0] != idxImages || lh[0] != idxLabels {
		return nil, fmt.Errorf("magic numbers %#x, %#x (want %#x, %#x): %w", ih[0], lh[0], idxImages, idxLabels, ErrFormat)
	}
	if lh[1] != ih[1] {
		return nil, fmt.Errorf("%d images but %d labels: %w", ih[1], lh[1], ErrFormat)
	}
	// The header sizes the allocation: refuse what no image data set needs
	// (Fashion-MNIST has 4.7e7 pixels) rather than let a corrupt header
	// allocate gigabytes. Each factor is bounded before the products.
	if ih[1] > 1<<22 || ih[2] > 1<<12 || ih[3] > 1<<12 {
		return nil, fmt.Errorf("implausible sizes %d×%d×%d: %w", ih[1], ih[2], ih[3], ErrFormat)
	}
	n, in := int(ih[1]), int(ih[2])*int(ih[3])
	if n*in > 1<<27 {
		return nil, fmt.Errorf("implausible sizes %d×%d: %w", n, in, ErrFormat)
	}
	// Labels first: a header that lies about n fails here, before the
	// large allocation.
	lab := make([]byte, n)
	if _, err := io.ReadFull(labels, lab); err != nil {
		return nil, fmt.Errorf("labels: %w: %w", ErrFormat, err)
	}
	for i, c := range lab {
		if int(c) >= classes {
			return nil, fmt.Errorf("label %d of sample %d ≥ %d classes: %w", c, i, classes, ErrFormat)
		}
	}
	d := &Dataset{N: n, In: in, Out: classes,
		Pixels: make([]uint8, n*in), Y: make([]float32, n*classes), Labels: make([]int32, n)}
	// Row by row, so that a truncated file names the image it ends in.
	for i := range n {
		if _, err := io.ReadFull(images, d.Pixels[i*in:(i+1)*in]); err != nil {
			return nil, fmt.Errorf("image %d: %w: %w", i, ErrFormat, err)
		}
	}
	for i, c := range lab {
		d.Labels[i] = int32(c)
		d.Y[i*classes+int(c)] = 1
	}
	return d, nil
}
