package oauth

import "context"

// SetCodeIssuer replaces IssueCode for the tests (captures the Grant).
func (s *Server) SetCodeIssuer(f func(context.Context, *Grant) (string, error)) { s.ui.issueCode = f }
