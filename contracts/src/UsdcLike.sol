// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title UsdcLike
/// @notice Devnet stand-in for Circle's USDC: a standard ERC-20 with 6 decimals, an owner who mints,
///         and a blacklist. Amounts are raw base units (1 USDC = 1_000_000). Test-only: no upgradeability,
///         no minter allowances, no pause.
contract UsdcLike {
    string public name;
    string public symbol;
    uint8 public constant decimals = 6;
    uint256 public totalSupply;
    address public owner;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => bool) public isBlacklisted;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Blacklisted(address indexed _account);
    event UnBlacklisted(address indexed _account);

    modifier onlyOwner() {
        require(msg.sender == owner, "UsdcLike: caller is not the owner");
        _;
    }

    modifier notBlacklisted(address account) {
        require(!isBlacklisted[account], "UsdcLike: account is blacklisted");
        _;
    }

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
        owner = msg.sender;
    }

    /// @notice Creates `amount` base units for `to`; emits Transfer(0x0, to, amount).
    function mint(address to, uint256 amount) external onlyOwner notBlacklisted(to) returns (bool) {
        require(to != address(0), "UsdcLike: mint to the zero address");
        totalSupply += amount;
        unchecked {
            // Cannot overflow: balanceOf[to] <= totalSupply, which was checked above.
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
        return true;
    }

    /// @notice Destroys `amount` base units of the caller; emits Transfer(caller, 0x0, amount).
    function burn(uint256 amount) external notBlacklisted(msg.sender) {
        uint256 balance = balanceOf[msg.sender];
        require(balance >= amount, "UsdcLike: burn amount exceeds balance");
        unchecked {
            balanceOf[msg.sender] = balance - amount;
            totalSupply -= amount;
        }
        emit Transfer(msg.sender, address(0), amount);
    }

    function blacklist(address account) external onlyOwner {
        isBlacklisted[account] = true;
        emit Blacklisted(account);
    }

    function unBlacklist(address account) external onlyOwner {
        isBlacklisted[account] = false;
        emit UnBlacklisted(account);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "UsdcLike: new owner is the zero address");
        owner = newOwner;
    }

    function approve(address spender, uint256 value)
        external
        notBlacklisted(msg.sender)
        notBlacklisted(spender)
        returns (bool)
    {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transfer(address to, uint256 value)
        external
        notBlacklisted(msg.sender)
        notBlacklisted(to)
        returns (bool)
    {
        _transfer(msg.sender, to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value)
        external
        notBlacklisted(msg.sender)
        notBlacklisted(from)
        notBlacklisted(to)
        returns (bool)
    {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= value, "UsdcLike: transfer amount exceeds allowance");
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function _transfer(address from, address to, uint256 value) internal {
        require(to != address(0), "UsdcLike: transfer to the zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "UsdcLike: transfer amount exceeds balance");
        unchecked {
            // Cannot overflow: the sum of all balances is totalSupply, a uint256.
            balanceOf[from] = balance - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
