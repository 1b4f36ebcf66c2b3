package web

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/officeedge/appliance/internal/shaper"
)

var (
	mShapeRate    = prometheus.NewDesc("appliance_shaper_rate_bits", "The rate an uplink's upload is shaped to now, in bit/s (95 % of the line rate; autorate moves it).", []string{"uplink", "interface"}, nil)
	mShapeLine    = prometheus.NewDesc("appliance_shaper_line_bits", "The uplink's upload line rate the shaper follows, in bit/s (configured, or autorate's estimate).", []string{"uplink", "interface"}, nil)
	mShapeSent    = prometheus.NewDesc("appliance_shaper_sent_bits", "What the box sent through the shaper in the last interval, in bit/s.", []string{"uplink", "interface"}, nil)
	mShapeApplied = prometheus.NewDesc("appliance_shaper_applied", "1 if the uplink's shaper tree is in the kernel as configured.", []string{"uplink", "interface"}, nil)
	mShapeRepairs = prometheus.NewDesc("appliance_shaper_repairs_total", "Shaper trees put back after something else changed or removed them.", []string{"uplink", "interface"}, nil)
	mShapeBytes   = prometheus.NewDesc("appliance_shaper_class_bytes_total", "Bytes sent by each shaper class (voice, interactive, bulk).", []string{"uplink", "class"}, nil)
	mShapeDrops   = prometheus.NewDesc("appliance_shaper_class_drops_total", "Packets each shaper class dropped (its queue was full).", []string{"uplink", "class"}, nil)
	mShapeBacklog = prometheus.NewDesc("appliance_shaper_class_backlog_bytes", "Bytes waiting in each shaper class now.", []string{"uplink", "class"}, nil)
	shaperDescs   = []*prometheus.Desc{mShapeRate, mShapeLine, mShapeSent, mShapeApplied, mShapeRepairs, mShapeBytes, mShapeDrops, mShapeBacklog}
)

func (s *Server) collectShaper(g, k metric) {
	if s.o.Shaper == nil {
		return
	}
	st, ok := s.o.Shaper()
	if !ok {
		return
	}
	for _, u := range st {
		g(mShapeRate, float64(u.Rate), u.Name, u.Interface)
		g(mShapeLine, float64(u.Line), u.Name, u.Interface)
		g(mShapeSent, float64(u.Sent), u.Name, u.Interface)
		g(mShapeApplied, boolGauge[u.Applied], u.Name, u.Interface)
		k(mShapeRepairs, float64(u.Repairs), u.Name, u.Interface)
		for _, c := range u.Classes {
			k(mShapeBytes, float64(c.Bytes), u.Name, c.Name)
			k(mShapeDrops, float64(c.Drops), u.Name, c.Name)
			g(mShapeBacklog, float64(c.Backlog), u.Name, c.Name)
		}
	}
}

// shaperStatus is the type of Options.Shaper.
type shaperStatus = func() ([]shaper.Status, bool)
