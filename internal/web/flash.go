package web

import "github.com/loyalty-edge-sync/loyalty"

// Flash is the one message a page shows after an action: a result (Title, Text) or a refusal
// (Title, Error, Hint: what to do), rendered by the "flash" template.
type Flash struct {
	Title string
	Text  string
	Error string
	Hint  string
}

// Refusal turns an error of the loyalty API into a Flash a cashier or operator can act on: the
// error's own message (written for people, with no internal ids) under a title for its code,
// and a hint for the codes that have an obvious next step.
func Refusal(err error) *Flash {
	code := loyalty.ErrorCode(err)
	f := &Flash{Title: "Not done.", Error: loyalty.ErrorMessage(err)}
	switch code {
	case loyalty.EINVALID:
		f.Title, f.Hint = "Check the input.", "Correct the field and try again."
	case loyalty.ENOTFOUND:
		f.Title, f.Hint = "Not found.", "Check the code or the spelling, or scan the card again."
	case loyalty.EINSUFFICIENT:
		f.Title, f.Hint = "Not enough points.", "Offer a smaller reward, or earn on this sale first."
	case loyalty.EBUDGET:
		f.Title, f.Hint = "Not available now.", "The member keeps their points; offer another reward."
	case loyalty.EDUPLICATE:
		f.Title, f.Hint = "Already done.", "This was recorded before; nothing was taken twice."
	case loyalty.EUNAUTHORIZED, loyalty.EFORBIDDEN:
		f.Title, f.Hint = "Not allowed.", "Sign in again, or ask a manager."
	case loyalty.EUNAVAILABLE:
		f.Title, f.Hint = "Not available right now.", "Try again in a moment."
	case loyalty.ECONFLICT:
		f.Title = "Not done: it conflicts with what is recorded."
	default:
		if code == "" || code == loyalty.EINTERNAL {
			f.Title, f.Error, f.Hint = "Something went wrong.", "The error is in the server's log.", "Try again; if it keeps failing, call support."
		}
	}
	return f
}
