package cli

import (
	"io"

	"github.com/alecthomas/kong"
)

// parser is a kong parser of the grammar, built once and reused: building
// one (reflection over the whole grammar, interpolation of every help
// text) costs more than most commands.
type parser struct {
	k *kong.Kong
	g *grammar
	// exit is the code kong exited with (--help), -1 when it did not.
	exit int
	// built is the parse state of the model as kong.New left it.
	built modelState
}

// parsers holds the parsers not in use (a parse writes the grammar and
// marks the model, so a parser serves one Main at a time). Main takes one
// or builds one, and gives it back when its command has returned.
var parsers = make(chan *parser, 8)

// newParser builds a parser of a grammar of its own.
func newParser() (*parser, error) {
	p := &parser{g: new(grammar), exit: -1}
	k, err := kong.New(p.g,
		kong.Name("lapis"),
		kong.Description("Lapis: a secure FHIR R4 server."),
		kong.UsageOnError(),
		kong.Exit(func(code int) { p.exit = code }),
	)
	if err != nil {
		return nil, err
	}
	p.k = k
	p.built = saveState(k.Model)
	return p, nil
}

// takeParser returns a parser not in use, as it was built, writing to
// stdout and stderr.
func takeParser(stdout, stderr io.Writer) (*parser, error) {
	var p *parser
	select {
	case p = <-parsers:
		p.reset()
	default:
		var err error
		if p, err = newParser(); err != nil {
			return nil, err
		}
	}
	p.k.Stdout, p.k.Stderr = stdout, stderr
	return p, nil
}

// release gives p back for a later Main (or drops it when enough wait).
func (p *parser) release() {
	select {
	case parsers <- p:
	default:
	}
}

// reset returns p to the state kong.New left it in: a zero grammar (kong
// resets the values it knows of, not the rest of a command's struct) and
// the model's parse state.
func (p *parser) reset() {
	*p.g = grammar{}
	p.built.restore()
	p.exit = -1
}

// modelState is what a kong parse changes in a model besides the grammar:
// the nodes and values on the parsed path are marked active, the values
// given or defaulted are marked set, a flag given as --no-X is marked
// negated and the flags of an "and" group required. kong builds a model
// per parse and never clears these, so a reused model gets them back.
type modelState struct {
	nodes  []*kong.Node
	active []bool
	values []*kong.Value
	value  []valueState
	flags  []*kong.Flag
	negate []bool
}

type valueState struct{ active, set, required bool }

// saveState records the parse state of every node, value and flag of app.
func saveState(app *kong.Application) modelState {
	var s modelState
	addNode := func(n *kong.Node) {
		s.nodes = append(s.nodes, n)
		s.active = append(s.active, n.Active)
	}
	addValue := func(v *kong.Value) {
		s.values = append(s.values, v)
		s.value = append(s.value, valueState{v.Active, v.Set, v.Required})
	}
	addNode(app.Node)
	if app.HelpFlag != nil {
		s.flags = append(s.flags, app.HelpFlag)
		s.negate = append(s.negate, app.HelpFlag.Negated)
		addValue(app.HelpFlag.Value)
	}
	_ = kong.Visit(app, func(n kong.Visitable, next kong.Next) error {
		switch n := n.(type) {
		case *kong.Node:
			addNode(n)
		case *kong.Flag:
			s.flags = append(s.flags, n)
			s.negate = append(s.negate, n.Negated)
		case *kong.Value:
			addValue(n)
		}
		return next(nil)
	})
	return s
}

// restore sets the parse state recorded by saveState back.
func (s modelState) restore() {
	for i, n := range s.nodes {
		n.Active = s.active[i]
	}
	for i, v := range s.values {
		v.Active, v.Set, v.Required = s.value[i].active, s.value[i].set, s.value[i].required
	}
	for i, f := range s.flags {
		f.Negated = s.negate[i]
	}
}
