// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title DaiLike
/// @notice Devnet stand-in for DAI: a plain ERC-20 with 18 decimals, an owner who mints, and self-burn.
///         Amounts are raw base units (1 DAI = 10**18).
contract DaiLike {
    string public name;
    string public symbol;
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    address public owner;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    modifier onlyOwner() {
        require(msg.sender == owner, "DaiLike: caller is not the owner");
        _;
    }

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
        owner = msg.sender;
    }

    /// @notice Creates `amount` base units for `to`; emits Transfer(0x0, to, amount).
    function mint(address to, uint256 amount) external onlyOwner {
        require(to != address(0), "DaiLike: mint to the zero address");
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Destroys `amount` base units of the caller; emits Transfer(caller, 0x0, amount).
    function burn(uint256 amount) external {
        uint256 balance = balanceOf[msg.sender];
        require(balance >= amount, "DaiLike: burn amount exceeds balance");
        unchecked {
            balanceOf[msg.sender] = balance - amount;
            totalSupply -= amount;
        }
        emit Transfer(msg.sender, address(0), amount);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "DaiLike: new owner is the zero address");
        owner = newOwner;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= value, "DaiLike: transfer amount exceeds allowance");
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function _transfer(address from, address to, uint256 value) internal {
        require(to != address(0), "DaiLike: transfer to the zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "DaiLike: transfer amount exceeds balance");
        unchecked {
            balanceOf[from] = balance - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
