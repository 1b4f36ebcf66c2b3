package netcfg

import "time"

// Saving: the claims (blocklist.json) and the community lists (blocklist/), crash-safe and
// at most once a second.

// save writes the claims at most once a second (now: whatever the time), so a flood of
// blocks does not wear the SD card out. It writes the published snapshot; the periodic save
// does so on a goroutine of its own, so that encoding 100k entries never holds up a request.
func (w *Owner) save(now bool) {
	if w.saveFailed.Swap(false) {
		w.dirty = true
	}
	if !w.dirty || w.o.StateDir == "" || (!now && time.Since(w.savedAt) < time.Second) {
		return
	}
	w.publish() // the snapshot has every change
	st := w.snap.Load()
	w.saveSeq++
	seq := w.saveSeq
	if now {
		w.dirty, w.savedAt = false, time.Now()
		w.writeState(seq, st)
		return
	}
	if !w.saving.CompareAndSwap(false, true) {
		return // the last one is still being written: the next tick goes again
	}
	w.dirty, w.savedAt = false, time.Now()
	go func() {
		defer w.saving.Store(false)
		w.writeState(seq, st)
	}()
}

// writeState writes snapshot seq unless a newer one is written already.
func (w *Owner) writeState(seq uint64, st *BlockState) {
	w.saveMu.Lock()
	defer w.saveMu.Unlock()
	if seq <= w.savedSeq {
		return
	}
	if err := saveState(w.o.StateDir, st.Entries, st.Feeds); err != nil {
		w.o.Log.Error("netcfg: save the blocklist", "err", err)
		w.saveFailed.Store(true)
		return
	}
	w.savedSeq = seq
}

func (w *Owner) saveFeedList(f *feedList) {
	if w.o.StateDir == "" {
		return
	}
	if err := saveFeed(w.o.StateDir, f); err != nil {
		w.o.Log.Error("netcfg: save feed list", "feed", f.Name, "err", err)
	}
}
