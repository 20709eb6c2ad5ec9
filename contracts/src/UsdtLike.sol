// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title UsdtLike
/// @notice Devnet stand-in for Tether's USDT (TetherToken), reproducing the quirks an indexer must survive:
///         - `transfer` / `transferFrom` return NOTHING (no bool), but emit Transfer;
///         - `issue` / `redeem` change the owner's balance and totalSupply WITHOUT a Transfer event;
///         - `destroyBlackFunds` zeroes a blacklisted balance WITHOUT a Transfer event;
///         - blacklist events carry the address in data (not indexed).
///         Amounts are raw base units, 6 decimals. `mint` (Transfer from 0x0) exists for test convenience only.
contract UsdtLike {
    string public name;
    string public symbol;
    uint8 public constant decimals = 6;
    uint256 public totalSupply;
    address public owner;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => bool) public isBlackListed;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Issue(uint256 amount);
    event Redeem(uint256 amount);
    event AddedBlackList(address _user);
    event RemovedBlackList(address _user);
    event DestroyedBlackFunds(address _blackListedUser, uint256 _balance);

    modifier onlyOwner() {
        require(msg.sender == owner, "UsdtLike: caller is not the owner");
        _;
    }

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
        owner = msg.sender;
    }

    /// @notice Owner's supply increase, like TetherToken.issue: no Transfer event.
    function issue(uint256 amount) external onlyOwner {
        totalSupply += amount;
        unchecked {
            balanceOf[owner] += amount;
        }
        emit Issue(amount);
    }

    /// @notice Owner's supply decrease, like TetherToken.redeem: no Transfer event.
    function redeem(uint256 amount) external onlyOwner {
        uint256 balance = balanceOf[owner];
        require(balance >= amount, "UsdtLike: redeem amount exceeds balance");
        unchecked {
            balanceOf[owner] = balance - amount;
            totalSupply -= amount;
        }
        emit Redeem(amount);
    }

    /// @notice Test convenience (not in TetherToken): creates `amount` for `to`, emits Transfer(0x0, to, amount).
    function mint(address to, uint256 amount) external onlyOwner {
        require(to != address(0), "UsdtLike: mint to the zero address");
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    function getBlackListStatus(address maker) external view returns (bool) {
        return isBlackListed[maker];
    }

    function addBlackList(address evilUser) external onlyOwner {
        isBlackListed[evilUser] = true;
        emit AddedBlackList(evilUser);
    }

    function removeBlackList(address clearedUser) external onlyOwner {
        isBlackListed[clearedUser] = false;
        emit RemovedBlackList(clearedUser);
    }

    /// @notice Zeroes a blacklisted balance and shrinks totalSupply: no Transfer event.
    function destroyBlackFunds(address blackListedUser) external onlyOwner {
        require(isBlackListed[blackListedUser], "UsdtLike: address is not blacklisted");
        uint256 dirtyFunds = balanceOf[blackListedUser];
        balanceOf[blackListedUser] = 0;
        unchecked {
            totalSupply -= dirtyFunds;
        }
        emit DestroyedBlackFunds(blackListedUser, dirtyFunds);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "UsdtLike: new owner is the zero address");
        owner = newOwner;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    /// @notice Non-standard: returns nothing.
    function transfer(address to, uint256 value) external {
        require(!isBlackListed[msg.sender], "UsdtLike: sender is blacklisted");
        _transfer(msg.sender, to, value);
    }

    /// @notice Non-standard: returns nothing.
    function transferFrom(address from, address to, uint256 value) external {
        require(!isBlackListed[from], "UsdtLike: sender is blacklisted");
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= value, "UsdtLike: transfer amount exceeds allowance");
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
    }

    function _transfer(address from, address to, uint256 value) internal {
        require(to != address(0), "UsdtLike: transfer to the zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "UsdtLike: transfer amount exceeds balance");
        unchecked {
            balanceOf[from] = balance - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
