package wan

import "sync"

// watchers are the channels of Watch. Each has room for one value: a watcher that is slow
// to look misses no change, it sees several as one.
type watchers struct {
	mu  sync.Mutex
	chs map[chan struct{}]struct{}
}

// Watch returns a channel that receives a value whenever what Status says about the uplinks
// may have changed: an uplink's state or address or resolvers, the active uplink, the
// override, both down, a trunk's state (not the probe figures, which change with every
// probe). Read Status after each value. The func ends the watch. Parts that react to the
// wan's state (the DNS forwarder, the LEDs) use this; the events stay the history.
func (s *Service) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.watch.mu.Lock()
	if s.watch.chs == nil {
		s.watch.chs = map[chan struct{}]struct{}{}
	}
	s.watch.chs[ch] = struct{}{}
	s.watch.mu.Unlock()
	return ch, func() {
		s.watch.mu.Lock()
		delete(s.watch.chs, ch)
		s.watch.mu.Unlock()
	}
}

// changed tells every watcher, never blocking the wan's loop.
func (s *Service) changed() {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	for ch := range s.watch.chs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
