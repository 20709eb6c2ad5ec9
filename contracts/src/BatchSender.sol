// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title BatchSender
/// @notice Pays many recipients in ONE transaction by calling `token.transferFrom(msg.sender, to[i], amounts[i])`
///         for each i, so one tx hash carries many Transfer logs. The caller must approve this contract first.
///         Tolerates tokens whose transferFrom returns nothing (USDT-like): the call must succeed and its
///         return data must be empty or decode to true. Amounts are raw token base units.
contract BatchSender {
    function batchTransfer(address token, address[] calldata to, uint256[] calldata amounts) external {
        require(to.length == amounts.length, "BatchSender: length mismatch");
        require(token.code.length != 0, "BatchSender: token is not a contract");
        for (uint256 i = 0; i < to.length; ++i) {
            (bool ok, bytes memory ret) =
                token.call(abi.encodeWithSelector(0x23b872dd, msg.sender, to[i], amounts[i]));
            require(ok, "BatchSender: transferFrom reverted");
            require(ret.length == 0 || (ret.length >= 32 && abi.decode(ret, (bool))), "BatchSender: transferFrom returned false");
        }
    }
}
