package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// SizeDist is a log-normal distribution of object sizes, clamped: exp(ln
// Median + Sigma·Z) bytes for a standard normal Z, then kept within
// [Min, Max]. Web objects are close to log-normal: many small, a long tail.
type SizeDist struct {
	Median int64   // bytes; the mean is Median·exp(Sigma²/2) before clamping
	Sigma  float64 // standard deviation of the natural log of the size
	Min    int64   // smallest size drawn, bytes
	Max    int64   // largest size drawn, bytes (a node's max object size)
}

// DefaultSizes is the size distribution of the report: median 16 KiB,
// σ = 1.2 (mean ≈ 33 KiB, 99th percentile ≈ 260 KiB), within 200 B and the
// default 8 MiB max object size.
var DefaultSizes = SizeDist{Median: 16 << 10, Sigma: 1.2, Min: 200, Max: 8 << 20}

func (d SizeDist) validate() error {
	if d.Median <= 0 || d.Sigma < 0 || d.Min <= 0 || d.Max < d.Min || d.Median < d.Min || d.Median > d.Max {
		return fmt.Errorf("size distribution needs 0 < min <= median <= max and sigma >= 0 (got %+v)", d)
	}
	return nil
}

func (d SizeDist) draw(rng *rand.Rand) int64 {
	s := int64(math.Round(float64(d.Median) * math.Exp(d.Sigma*rng.NormFloat64())))
	return min(max(s, d.Min), d.Max)
}

// Population is a fixed set of distinct URL-like cache keys (host and path,
// the primary key the ring places) with the size of the object each names.
type Population struct {
	arena []byte
	ends  []int   // key i is arena[ends[i-1]:ends[i]]
	sizes []int64 // bytes of the object behind key i
	total int64   // sum of sizes
}

// NewPopulation draws n keys and their sizes from seed; the same arguments
// give the same population.
func NewPopulation(n int, sizes SizeDist, seed uint64) (*Population, error) {
	if n <= 0 {
		return nil, fmt.Errorf("population needs at least one key (got %d)", n)
	}
	if err := sizes.validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b657973)) // "keys"
	p := &Population{ends: make([]int, n), sizes: make([]int64, n), arena: make([]byte, 0, n*48)}
	for i := range n {
		p.arena = appendKey(p.arena, rng, i)
		p.ends[i] = len(p.arena)
		p.sizes[i] = sizes.draw(rng)
		p.total += p.sizes[i]
	}
	return p, nil
}

// Len is the number of keys.
func (p *Population) Len() int { return len(p.ends) }

// Key returns key i; the caller must not modify it.
func (p *Population) Key(i int) []byte {
	start := 0
	if i > 0 {
		start = p.ends[i-1]
	}
	return p.arena[start:p.ends[i]]
}

// Size returns the size of key i's object in bytes.
func (p *Population) Size(i int) int64 { return p.sizes[i] }

// Bytes is the sum of all objects' sizes.
func (p *Population) Bytes() int64 { return p.total }

// sites are the hosts keys are spread over; a shared cache in front of a
// few properties sees a handful of hosts.
var sites = []string{"www.shop.example", "static.shop.example", "img.shop.example", "api.shop.example", "news.example.org", "cdn.example.net"}

var sections = []string{"products", "articles", "category", "search", "user", "video"}

// appendKey appends the i-th key, shaped like the keys ringcache hashes:
// host, path, sometimes a query. i is part of every key, so keys are
// distinct; the rest is drawn from rng.
func appendKey(dst []byte, rng *rand.Rand, i int) []byte {
	dst = append(dst, sites[rng.IntN(len(sites))]...)
	id := strconv.AppendInt(nil, int64(i), 10)
	switch rng.IntN(4) {
	case 0: // fingerprinted static asset
		dst = append(dst, "/assets/"...)
		dst = strconv.AppendUint(dst, rng.Uint64()>>20, 36)
		dst = append(dst, '/')
		dst = append(dst, id...)
		if rng.IntN(2) == 0 {
			return append(dst, ".js"...)
		}
		return append(dst, ".css"...)
	case 1: // image with a rendition
		dst = append(dst, "/img/"...)
		dst = append(dst, id...)
		dst = append(dst, '/')
		dst = strconv.AppendInt(dst, int64(100*(1+rng.IntN(16))), 10)
		return append(dst, "w.jpg"...)
	case 2: // page
		dst = append(dst, '/')
		dst = append(dst, sections[rng.IntN(len(sections))]...)
		dst = append(dst, "/item-"...)
		return append(dst, id...)
	default: // API answer with a query
		dst = append(dst, "/v1/items/"...)
		dst = append(dst, id...)
		dst = append(dst, "?lang="...)
		return append(dst, []string{"en", "de", "fr", "ja"}[rng.IntN(4)]...)
	}
}

// podAlphabet is the alphabet Kubernetes uses for generated name suffixes
// (no vowels, no look-alikes).
const podAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// Names returns n distinct member names shaped like the pod names of one
// Kubernetes Deployment ("web-6d4cf56db6-x2k8p": deployment, template
// hash, random suffix), the node names a sidecar gets from metadata.name,
// drawn from seed. Extra names (a member that joins) come from the same
// sequence: Names(n+1, seed) starts with Names(n, seed).
func Names(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0x6e616d6573)) // "names"
	prefix := "web-" + randString(rng, 10) + "-"
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	for len(out) < n {
		name := prefix + randString(rng, 5)
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

func randString(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = podAlphabet[rng.IntN(len(podAlphabet))]
	}
	return string(b)
}
