package config_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/ringcache/ringcache/config"
)

func ExampleLoad() {
	// In main: config.Load(os.Args[2:], os.Environ(), os.Stdout).
	cfg, warnings, err := config.Load(
		[]string{"--origin", "https://origin.example.com", "--cache-size", "1GiB"},
		[]string{"RINGCACHE_CACHE_SIZE=512MiB", "RINGCACHE_STORE=lru", "RINGCACHE_STROE=arc", "HOME=/root"},
		os.Stdout)
	for _, w := range warnings {
		fmt.Println("warning:", w) // log them, also beside an error
	}
	if errors.Is(err, config.ErrHelp) {
		return // usage printed; exit 0
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	// The flag beats the environment; the environment beats the default.
	fmt.Println(config.FormatBytes(cfg.CacheSize), cfg.Store, cfg.Ring)

	_, _, err = config.Load([]string{"--origin=https://origin.example.com", "--store=arc"}, nil, nil)
	fmt.Println(err)
	// Output:
	// warning: unknown environment variable RINGCACHE_STROE ignored (did you mean RINGCACHE_STORE?)
	// 1GiB lru hashring
	// invalid store "arc" (flag --store): want ristretto or lru
}
