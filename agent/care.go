package agent

import (
	"context"

	"github.com/loyalty-edge-sync/loyalty"
)

// refuseErased returns ENOTFOUND if the replica holds member as erased at the hub
// (loyalty.Member.Erased): their QR codes name no one any more. A member the replica does not
// hold is not refused: a store that has not heard of an erasure cannot know of it.
func refuseErased(ctx context.Context, tx Tx, member string) error {
	m, err := tx.Member(ctx, member)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return nil
	}
	if err == nil && m.Erased {
		return loyalty.Errorf(loyalty.ENOTFOUND, "this member code belongs to an account whose personal data was erased; it is no longer accepted")
	}
	return err
}
