package capture

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// ErrTooLong is a program whose conditional jump spans more than classic BPF's 255 instructions.
var ErrTooLong = errors.New("bpf program too long")

// Prog is a classic BPF program with forward jumps to labels, resolved by Assemble;
// golang.org/x/net/bpf takes only numeric skips, and counting them by hand breaks on every edit.
type Prog struct {
	ins    []bpf.Instruction
	fix    []fixup
	labels map[string]int
}

type fixup struct {
	at    int
	label string
}

// Emit appends an instruction and returns its index.
func (p *Prog) Emit(i bpf.Instruction) int { p.ins = append(p.ins, i); return len(p.ins) - 1 }

// Label names the next instruction.
func (p *Prog) Label(l string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[l] = len(p.ins)
}

// jump adds a conditional jump to l when cond holds (it falls through otherwise).
func (p *Prog) jump(cond bpf.JumpTest, v uint32, l string) {
	p.fix = append(p.fix, fixup{p.Emit(bpf.JumpIf{Cond: cond, Val: v}), l})
}

// JEq jumps to l when A == v.
func (p *Prog) JEq(v uint32, l string) { p.jump(bpf.JumpEqual, v, l) }

// JNe jumps to l when A != v.
func (p *Prog) JNe(v uint32, l string) { p.jump(bpf.JumpNotEqual, v, l) }

// JLt jumps to l when A < v.
func (p *Prog) JLt(v uint32, l string) { p.jump(bpf.JumpLessThan, v, l) }

// JGt jumps to l when A > v.
func (p *Prog) JGt(v uint32, l string) { p.jump(bpf.JumpGreaterThan, v, l) }

// JA jumps to l always.
func (p *Prog) JA(l string) { p.fix = append(p.fix, fixup{p.Emit(bpf.Jump{}), l}) }

// Assemble resolves the jumps and assembles the program.
func (p *Prog) Assemble() ([]bpf.RawInstruction, error) {
	for _, f := range p.fix {
		to, ok := p.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("bpf label %s", f.label)
		}
		skip := to - f.at - 1
		if skip < 0 {
			return nil, fmt.Errorf("bpf label %s: jump backwards", f.label)
		}
		switch i := p.ins[f.at].(type) {
		case bpf.JumpIf:
			if skip > 255 {
				return nil, ErrTooLong
			}
			i.SkipTrue = uint8(skip)
			p.ins[f.at] = i
		case bpf.Jump:
			i.Skip = uint32(skip)
			p.ins[f.at] = i
		}
	}
	return bpf.Assemble(p.ins)
}

// IPStart begins a filter for a cooked packet socket (the IP header at offset 0): IPv6
// jumps to label "v6", anything but IPv4 and IPv6 to "drop", as do IPv4 fragments after the
// first; the first fragment of IPv4 falls through with its protocol number in A.
func (p *Prog) IPStart() {
	p.Emit(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.Emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.JEq(0x40, "v4")
	p.JEq(0x60, "v6")
	p.JA("drop")
	p.Label("v4")
	p.Emit(bpf.LoadAbsolute{Off: 6, Size: 2})
	p.Emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x1fff})
	p.JEq(0, "v4first")
	p.JA("drop")
	p.Label("v4first")
	p.Emit(bpf.LoadAbsolute{Off: 9, Size: 1})
}
